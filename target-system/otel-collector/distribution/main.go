// A small OpenTelemetry Collector distribution built from the published collector modules
// (v0.161.0 / v1.67.0, the newest release line the module proxy serves whole, the
// load-balancing exporter included): the OTLP receiver, the OTLP (gRPC) exporter, the debug,
// file, load-balancing and nop exporters, and the spanmetrics connector. The end-to-end tests
// use it as the collector downstream of otelwatch (its file exporter shows what arrived), as a
// client (its OTLP exporter, gzip by default, sending into otelwatch) and as the first tier in
// front of several otelwatch instances (its `loadbalancing` exporter routing by service);
// scripts/bench's side-by-side mode (SIDE=1) runs it next to otelwatch (nop for
// receive-and-discard, spanmetrics as the Collector's counterpart of detection).
//
// It is what the Collector's builder would generate for the same component list; listing the
// factories by hand keeps the build to one `go build`.
package main

import (
	"log"
	"runtime/debug"
	"strings"

	"github.com/open-telemetry/opentelemetry-collector-contrib/connector/spanmetricsconnector"
	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter"
	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/loadbalancingexporter"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/debugexporter"
	"go.opentelemetry.io/collector/exporter/nopexporter"
	"go.opentelemetry.io/collector/exporter/otlpexporter"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"
)

func components() (otelcol.Factories, error) {
	var err error
	factories := otelcol.Factories{Telemetry: otelconftelemetry.NewFactory()}
	if factories.Receivers, err = otelcol.MakeFactoryMap[receiver.Factory](
		otlpreceiver.NewFactory(),
	); err != nil {
		return otelcol.Factories{}, err
	}
	if factories.Exporters, err = otelcol.MakeFactoryMap[exporter.Factory](
		otlpexporter.NewFactory(),
		debugexporter.NewFactory(),
		fileexporter.NewFactory(),
		loadbalancingexporter.NewFactory(),
		nopexporter.NewFactory(),
	); err != nil {
		return otelcol.Factories{}, err
	}
	if factories.Connectors, err = otelcol.MakeFactoryMap[connector.Factory](
		spanmetricsconnector.NewFactory(),
	); err != nil {
		return otelcol.Factories{}, err
	}
	factories.ReceiverModules = map[component.Type]string{
		otlpreceiver.NewFactory().Type(): module("go.opentelemetry.io/collector/receiver/otlpreceiver"),
	}
	factories.ExporterModules = map[component.Type]string{
		otlpexporter.NewFactory().Type():          module("go.opentelemetry.io/collector/exporter/otlpexporter"),
		debugexporter.NewFactory().Type():         module("go.opentelemetry.io/collector/exporter/debugexporter"),
		fileexporter.NewFactory().Type():          module("github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter"),
		nopexporter.NewFactory().Type():           module("go.opentelemetry.io/collector/exporter/nopexporter"),
		loadbalancingexporter.NewFactory().Type(): module("github.com/open-telemetry/opentelemetry-collector-contrib/exporter/loadbalancingexporter"),
	}
	factories.ConnectorModules = map[component.Type]string{
		spanmetricsconnector.NewFactory().Type(): module("github.com/open-telemetry/opentelemetry-collector-contrib/connector/spanmetricsconnector"),
	}
	return factories, nil
}

// module names a dependency with the version go.mod resolved, for `components`.
func module(path string) string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == path {
				return dep.Path + " " + dep.Version
			}
		}
	}
	return path
}

func main() {
	info := component.BuildInfo{
		Command:     "otelcol-otelwatch",
		Description: "OpenTelemetry Collector (OTLP receiver; OTLP, debug, file and nop exporters; spanmetrics connector) for otelwatch's tests and benchmarks",
		Version:     strings.TrimPrefix(module("go.opentelemetry.io/collector/otelcol"), "go.opentelemetry.io/collector/otelcol v"),
	}
	settings := otelcol.CollectorSettings{
		BuildInfo: info,
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{
					envprovider.NewFactory(),
					fileprovider.NewFactory(),
					yamlprovider.NewFactory(),
				},
			},
		},
	}
	if err := otelcol.NewCommand(settings).Execute(); err != nil {
		log.Fatal(err)
	}
}
