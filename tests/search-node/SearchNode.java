import org.codelibs.opensearch.runner.OpenSearchRunner;

/**
 * Starts one OpenSearch node in this JVM: SearchNode DATA_DIR HTTP_PORT TRANSPORT_PORT.
 * Prints "READY <port>" once the cluster is yellow; stops on SIGTERM or when stdin closes.
 */
public class SearchNode {
    public static void main(String[] args) throws Exception {
        String base = args[0];
        String httpPort = args[1];
        String transportPort = args[2];
        OpenSearchRunner runner = new OpenSearchRunner();
        runner.onBuild((number, settings) -> {
            settings.put("http.port", httpPort);
            settings.put("transport.port", transportPort);
            settings.put("discovery.type", "single-node");
            settings.put("cluster.routing.allocation.disk.threshold_enabled", "false");
        });
        runner.build(OpenSearchRunner.newConfigs().basePath(base).numOfNode(1)
            .clusterName("otelwatch-test").printOnFailure());
        runner.ensureYellow();
        System.out.println("READY " + httpPort);
        System.out.flush();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try { runner.close(); runner.clean(); } catch (Exception e) { }
        }));
        while (System.in.read() != -1) { }
        System.exit(0);
    }
}
