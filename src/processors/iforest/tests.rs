use super::forest::Rng;
use super::*;
use crate::processors::ProcessorType;

const S: u64 = 1_000_000_000;

/// A service's windows: ~200 requests per 10 s following a slow daily-like curve, ~1% errors,
/// p50 ≈ 50 ms, with noise.
struct Stream {
    rng: Rng,
    k: u64,
    key: Arc<SeriesKey>,
    prev: f64,
}

impl Stream {
    fn new(seed: u64, name: &str) -> Self {
        Self {
            rng: Rng::new(seed),
            k: 0,
            key: Arc::new(SeriesKey::service(name)),
            prev: 200.0,
        }
    }

    fn gauss(&mut self) -> f64 {
        gauss(&mut self.rng)
    }

    fn next(&mut self) -> WindowRecord {
        // One "day" per 8640 windows; start mid-morning.
        let phase = (self.k as f64 / 8640.0 + 0.3) * 2.0 * std::f64::consts::PI;
        let base = 200.0 * (1.0 + 0.5 * phase.sin());
        let n = (base + base.sqrt() * self.gauss()).round().max(1.0);
        let errors = (n * 0.01 + (n * 0.01).sqrt() * self.gauss())
            .round()
            .max(0.0);
        let p50 = 50.0 + 3.0 * self.gauss();
        let mut f = [0.0; N_FEATURES];
        f[feature::REQUEST_COUNT] = n;
        f[feature::ERROR_RATE] = errors / n;
        f[feature::CLIENT_ERROR_RATE] = 0.02 + 0.005 * self.gauss().abs();
        f[feature::LATENCY_MEAN] = p50 * 1.1;
        f[feature::LATENCY_P50] = p50;
        f[feature::LATENCY_P95] = p50 * 2.0 + 6.0 * self.gauss();
        f[feature::LATENCY_P99] = p50 * 3.0 + 12.0 * self.gauss();
        f[feature::LATENCY_MAX] = p50 * 4.0 + 30.0 * self.gauss().abs();
        f[feature::LATENCY_STDDEV] = p50 * 0.5 + 3.0 * self.gauss();
        f[feature::THROUGHPUT_CHANGE] = n / self.prev;
        self.prev = n;
        self.k += 1;
        WindowRecord::new(
            self.key.clone(),
            1_700_000_000 * S + self.k * 10 * S,
            10 * S,
            f,
        )
    }
}

/// A standard normal draw (Box–Muller).
fn gauss(rng: &mut Rng) -> f64 {
    let u1 = rng.uniform(1e-12, 1.0);
    let u2 = rng.unit();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Window `k` (10 s windows) of `key` with these features.
fn record_at(key: &Arc<SeriesKey>, k: u64, features: [f64; N_FEATURES]) -> WindowRecord {
    WindowRecord::new(
        key.clone(),
        1_700_000_000 * S + k * 10 * S,
        10 * S,
        features,
    )
}

fn processor() -> IForestProcessor {
    IForestProcessor::new(&IForestConfig::default(), "iforest", &Telemetry::new())
}

#[test]
fn a_normal_stream_with_a_daily_curve_produces_no_anomaly_after_warmup() {
    let mut p = processor();
    let mut s = Stream::new(1, "checkout");
    let mut flagged = Vec::new();
    // 2000 windows: 5.5 hours at 10 s, through a quarter of the daily curve.
    for i in 0..2000 {
        let mut r = s.next();
        p.score(&mut r);
        let a = r.anomaly.unwrap();
        assert_eq!(a.warming_up, i < 30);
        assert!((0.0..=1.0).contains(&a.score));
        if a.is_anomaly {
            flagged.push((i, a.message));
        }
    }
    assert!(flagged.is_empty(), "false positives: {flagged:?}");
}

#[test]
fn a_latency_spike_is_flagged_and_explained_by_latency() {
    let mut p = processor();
    let mut s = Stream::new(2, "checkout");
    for _ in 0..200 {
        let mut r = s.next();
        p.score(&mut r);
    }
    let mut r = s.next();
    for i in [
        feature::LATENCY_MEAN,
        feature::LATENCY_P50,
        feature::LATENCY_P95,
        feature::LATENCY_P99,
        feature::LATENCY_MAX,
    ] {
        r.features[i] += 600.0;
    }
    p.score(&mut r);
    let a = r.anomaly.unwrap();
    assert!(a.is_anomaly, "score {} threshold {}", a.score, a.threshold);
    assert!(
        a.contributions[0].feature.starts_with("latency_"),
        "{:?}",
        a.contributions
    );
    assert!(a.contributions[0].actual > a.contributions[0].typical + 500.0);
    assert!(a.message.starts_with("checkout: latency_"), "{}", a.message);
    assert!(a.severity.is_some());
    let doc = r_doc(&r_with(a));
    assert_eq!(doc["anomaly"]["is_anomaly"], true);
}

fn r_with(a: Anomaly) -> WindowRecord {
    WindowRecord {
        series: Arc::new(SeriesKey::service("checkout")),
        start_ns: 0,
        interval_ns: 10 * S,
        features: [0.0; N_FEATURES],
        anomaly: Some(a),
        partial: false,
        templates: Vec::new(),
        traces: 0,
        examples: Vec::new(),
        presence: Default::default(),
    }
}

fn r_doc(r: &WindowRecord) -> serde_json::Value {
    r.to_document()
}

#[test]
fn an_error_burst_is_explained_by_the_error_rate_and_not_learned() {
    let mut p = processor();
    let mut s = Stream::new(3, "payments");
    for _ in 0..200 {
        let mut r = s.next();
        p.score(&mut r);
    }
    let learned_before = p.model(&s.key).unwrap().learned();
    for _ in 0..5 {
        let mut r = s.next();
        r.features[feature::ERROR_RATE] = 0.35;
        p.score(&mut r);
        let a = r.anomaly.unwrap();
        assert!(a.is_anomaly, "{a:?}");
        assert_eq!(a.contributions[0].feature, "error_rate");
    }
    assert_eq!(
        p.model(&s.key).unwrap().learned(),
        learned_before,
        "anomalous windows must not be learned"
    );
}

#[test]
fn a_silent_service_is_flagged_by_its_request_count() {
    let mut p = processor();
    let mut s = Stream::new(4, "search");
    for _ in 0..200 {
        let mut r = s.next();
        p.score(&mut r);
    }
    let mut r = s.next();
    r.features = [0.0; N_FEATURES];
    r.features[feature::THROUGHPUT_CHANGE] = 0.0;
    p.score(&mut r);
    let a = r.anomaly.unwrap();
    assert!(a.is_anomaly, "{a:?}");
    let names: Vec<&str> = a.contributions.iter().map(|c| c.feature).collect();
    assert!(names.contains(&"request_count"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("latency_")),
        "an empty window has no latency"
    );
}

#[test]
fn scoring_is_deterministic_for_a_seed() {
    let run = |seed: u64| {
        let cfg = IForestConfig {
            seed,
            ..Default::default()
        };
        let mut p = IForestProcessor::new(&cfg, "x", &Telemetry::new());
        let mut s = Stream::new(9, "svc");
        (0..300)
            .map(|_| {
                let mut r = s.next();
                p.score(&mut r);
                r.anomaly.unwrap().score
            })
            .collect::<Vec<f64>>()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

/// A series with `relearn_after` 20, after 200 normal windows: `next(shifted)` scores its next
/// window, 150 ms slower when `shifted`.
fn after_warmup() -> impl FnMut(bool) -> Anomaly {
    let cfg = IForestConfig {
        relearn_after: 20,
        ..Default::default()
    };
    let mut p = IForestProcessor::new(&cfg, "x", &Telemetry::new());
    let mut s = Stream::new(5, "svc");
    for _ in 0..200 {
        let mut r = s.next();
        p.score(&mut r);
    }
    move |shifted| {
        let mut r = s.next();
        if shifted {
            for i in [
                feature::LATENCY_MEAN,
                feature::LATENCY_P50,
                feature::LATENCY_P95,
            ] {
                r.features[i] += 150.0;
            }
        }
        p.score(&mut r);
        r.anomaly.unwrap()
    }
}

/// Latency 150 ms up for good, but every `unshifted`-th window in the old range: how many of
/// 400 shifted windows were flagged, and whether the last one was.
fn shifted_level(unshifted: Option<usize>) -> (usize, bool) {
    let mut next = after_warmup();
    let (mut flagged, mut last) = (0, true);
    for k in 0..400 {
        let shifted = unshifted.is_none_or(|n| k % n != n - 1);
        let a = next(shifted);
        if shifted {
            last = a.is_anomaly;
            flagged += last as usize;
        }
    }
    (flagged, last)
}

#[test]
fn a_lasting_level_shift_becomes_the_new_normal() {
    let (flagged, last) = shifted_level(None);
    assert!(
        flagged >= 20,
        "the shift is an anomaly at first ({flagged})"
    );
    assert!(!last, "after a while it is the new normal");
}

#[test]
fn a_shifted_level_with_now_and_then_a_window_in_its_old_range_is_still_learned() {
    // One window in twelve in the old range: a run counted from zero at each of them never
    // reaches 20.
    let (flagged, last) = shifted_level(Some(12));
    assert!(
        flagged >= 20,
        "the shift is an anomaly at first ({flagged})"
    );
    assert!(!last, "after a while it is the new normal");
}

#[test]
fn a_recovery_of_two_windows_ends_a_run_however_long() {
    let mut next = after_warmup();
    // A fault for 19 windows, two normal ones, and another fault: the second is not learned
    // from its first window on as though the first had gone on.
    for _ in 0..19 {
        assert!(next(true).is_anomaly);
    }
    for _ in 0..2 {
        assert!(!next(false).is_anomaly);
    }
    let a = next(true);
    assert!(a.is_anomaly);
    assert!(!a.message.contains("new normal"), "{}", a.message);
}

#[test]
fn config_checks() {
    let v: serde_norway::Value =
        serde_norway::from_str("threshold: often\nwarmup: 2\ntrees: 0\n").unwrap();
    let errs: Vec<String> = IForestConfig::parse("processors.iforest", v)
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert!(errs
        .iter()
        .any(|e| e.starts_with("processors.iforest.threshold: must be \"auto\"")));
    assert!(errs
        .iter()
        .any(|e| e.starts_with("processors.iforest.warmup:")));
    assert!(errs
        .iter()
        .any(|e| e.starts_with("processors.iforest.trees:")));
    let v: serde_norway::Value = serde_norway::from_str("threshold: 0.7\n").unwrap();
    assert_eq!(
        IForestConfig::parse("p", v).unwrap().threshold,
        ThresholdSetting::Fixed(0.7)
    );
}

#[test]
fn models_round_trip_through_the_saved_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("models/models.json");
    let cfg = IForestConfig {
        model_path: path.display().to_string(),
        ..Default::default()
    };
    let mut p = IForestProcessor::new(&cfg, "x", &Telemetry::new());
    let mut a = Stream::new(21, "svc-a");
    let mut b = Stream::new(22, "svc-b");
    for _ in 0..300 {
        let (mut ra, mut rb) = (a.next(), b.next());
        p.score(&mut ra);
        p.score(&mut rb);
    }
    // Shutdown saves.
    p.on_shutdown(&mut Vec::new());
    assert!(path.exists());

    let loaded = IForestProcessor::with_saved_models(&cfg, "y", &Telemetry::new());
    assert_eq!(loaded.series(), 2);
    // Saving what was loaded gives the same file.
    assert!(
        loaded.to_model_file() == p.to_model_file(),
        "the reloaded model differs from the saved one"
    );
    let again = IForestProcessor::with_saved_models(&cfg, "z", &Telemetry::new());
    let mut loaded = loaded;
    let mut again = again;
    // A loaded model is warm and deterministic, and judges like the original.
    for _ in 0..50 {
        let r = a.next();
        let (mut r1, mut r2, mut r3) = (r.clone(), r.clone(), r);
        loaded.score(&mut r1);
        again.score(&mut r2);
        p.score(&mut r3);
        let (s1, s2, s3) = (
            r1.anomaly.unwrap(),
            r2.anomaly.unwrap(),
            r3.anomaly.unwrap(),
        );
        assert!(!s1.warming_up);
        assert_eq!(s1.score, s2.score);
        assert_eq!(s1.is_anomaly, s3.is_anomaly);
        assert!(
            (s1.score - s3.score).abs() < 0.15,
            "{} vs {}",
            s1.score,
            s3.score
        );
    }
}

#[test]
fn a_model_file_of_another_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.json");
    std::fs::write(
        &path,
        r#"{"format":"otelwatch-iforest","version":99,"seed":1,"series":[]}"#,
    )
    .unwrap();
    let err = persist::read(&path).unwrap_err();
    assert!(err.to_string().contains("version 99"), "{err}");
    std::fs::write(&path, "not json").unwrap();
    assert!(matches!(
        persist::read(&path),
        Err(persist::ModelError::Format { .. })
    ));
    // The processor starts cold rather than failing.
    let cfg = IForestConfig {
        model_path: path.display().to_string(),
        ..Default::default()
    };
    assert_eq!(
        IForestProcessor::with_saved_models(&cfg, "x", &Telemetry::new()).series(),
        0
    );
}

#[test]
fn error_evidence_respects_traffic_volume() {
    // 2 errors in 10 requests against a 1% baseline: ordinary bad luck.
    assert!(
        binomial_z(10.0, 2.0, 0.01) < 3.0,
        "{}",
        binomial_z(10.0, 2.0, 0.01)
    );
    // 8 in 80 against 1%: not luck.
    assert!(
        binomial_z(80.0, 8.0, 0.01) > 4.0,
        "{}",
        binomial_z(80.0, 8.0, 0.01)
    );
    // Large counts use the normal approximation: 600 of 10 000 against 5%.
    let z = binomial_z(10_000.0, 600.0, 0.05);
    assert!((z - 4.57).abs() < 0.05, "{z}");
    // Fewer errors than usual is never evidence.
    assert_eq!(binomial_z(100.0, 0.0, 0.05), 0.0);
    // The tail-to-z conversion matches the normal table.
    assert!((upper_tail_z(0.001) - 3.09).abs() < 0.01);
    assert!((upper_tail_z(0.05) - 1.645).abs() < 0.01);
    // Evidence is 0.5 exactly at the deviation threshold.
    assert_eq!(evidence_score(4.0, 4.0), 0.5);
    assert!(evidence_score(1.5, 4.0) < 0.2);
}

/// A window's features computed from its requests' latencies (no errors).
fn window_of(key: &Arc<SeriesKey>, k: u64, lat: &[f64], prev: f64) -> WindowRecord {
    let mut v = lat.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len() as f64;
    let q = |p: f64| v[((p * n).ceil() as usize).clamp(1, v.len()) - 1];
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let mut f = [0.0; N_FEATURES];
    f[feature::REQUEST_COUNT] = n;
    f[feature::LATENCY_MEAN] = mean;
    f[feature::LATENCY_P50] = q(0.5);
    f[feature::LATENCY_P95] = q(0.95);
    f[feature::LATENCY_P99] = q(0.99);
    f[feature::LATENCY_MAX] = v[v.len() - 1];
    f[feature::LATENCY_STDDEV] = var.sqrt();
    f[feature::THROUGHPUT_CHANGE] = n / prev;
    record_at(key, k, f)
}

/// Log-normal request latencies: median `median` ms, log spread 0.5.
fn latencies(rng: &mut Rng, n: usize, median: f64) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let u1 = rng.uniform(1e-12, 1.0);
            let u2 = rng.unit();
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            median * (0.5 * z).exp()
        })
        .collect()
}

/// A model trained on `windows` windows of `per_window` requests each.
fn trained(per_window: usize, windows: u64) -> (IForestProcessor, Arc<SeriesKey>, Rng) {
    let mut p = processor();
    let key = Arc::new(SeriesKey::edge("frontend", "checkout"));
    let mut rng = Rng::new(5);
    for k in 0..windows {
        let mut r = window_of(
            &key,
            k,
            &latencies(&mut rng, per_window, 50.0),
            per_window as f64,
        );
        p.score(&mut r);
    }
    (p, key, rng)
}

#[test]
fn a_doubled_p95_of_three_requests_is_not_evidence_but_of_three_hundred_it_is() {
    let true_p95 = 50.0 * (0.5f64 * 1.645).exp();
    // A sparse series: three requests a window.
    let (mut p, key, _) = trained(3, 200);
    let mut sparse = window_of(&key, 200, &[48.0, 61.0, 2.0 * true_p95], 3.0);
    p.score(&mut sparse);
    let a = sparse.anomaly.as_ref().unwrap();
    assert!(
        !a.is_anomaly,
        "three requests with a 2× p95 flagged: {}",
        a.message
    );

    // A busy series with the same requests: a p95 twice as high in 300 requests is a shift.
    let (mut p, key, mut rng) = trained(300, 200);
    let shifted = latencies(&mut rng, 300, 100.0);
    let mut busy = window_of(&key, 200, &shifted, 300.0);
    let p95 = busy.features[feature::LATENCY_P95];
    assert!((1.6 * true_p95..2.6 * true_p95).contains(&p95), "p95 {p95}");
    p.score(&mut busy);
    let a = busy.anomaly.as_ref().unwrap();
    assert!(
        a.is_anomaly,
        "300 requests with a 2× p95 not flagged (score {})",
        a.score
    );
}

#[test]
fn every_request_of_a_sparse_window_far_slower_is_still_caught() {
    // Three requests, all eight times slower: each is far beyond the tail, so even three
    // are significant.
    let (mut p, key, _) = trained(3, 200);
    let mut r = window_of(&key, 200, &[400.0, 420.0, 450.0], 3.0);
    p.score(&mut r);
    let a = r.anomaly.as_ref().unwrap();
    assert!(a.is_anomaly, "score {} {:?}", a.score, a.contributions);
}

#[test]
fn a_few_slow_requests_are_no_news_where_windows_often_hold_them_and_a_slow_window_still_is() {
    // Two hundred requests a window; one window in eight holds three requests ten times the
    // usual (a collection pause stalls the requests in flight): a tail far heavier than the
    // log-normal fitted to the requests predicts.
    let mut p = processor();
    let key = Arc::new(SeriesKey::service("checkout"));
    let mut rng = Rng::new(23);
    let window = |rng: &mut Rng, slow: usize| {
        let mut lat = latencies(rng, 200, 50.0);
        for l in lat.iter_mut().take(slow) {
            *l = 500.0 * rng.uniform(0.9, 1.1);
        }
        lat
    };
    for k in 0..200 {
        let lat = window(&mut rng, if k % 8 == 0 { 3 } else { 0 });
        let mut r = window_of(&key, k, &lat, 200.0);
        p.score(&mut r);
    }
    let mut r = window_of(&key, 200, &window(&mut rng, 3), 200.0);
    p.score(&mut r);
    let a = r.anomaly.as_ref().unwrap();
    assert!(!a.is_anomaly, "three slow requests flagged: {}", a.message);
    // Every request three times slower is a shift the pauses never showed.
    let mut r = window_of(&key, 201, &latencies(&mut rng, 200, 150.0), 200.0);
    p.score(&mut r);
    let a = r.anomaly.as_ref().unwrap();
    assert!(a.is_anomaly, "score {} {:?}", a.score, a.contributions);
}

#[test]
fn request_latency_order_statistics_follow_the_binomial_tail() {
    let d = RequestLatency {
        mu: 50f64.ln(),
        sigma: 0.5,
        mean: 50.0 * (0.125f64).exp(),
        stddev: 28.0,
        tail_floor: 0.0,
        seen: 1000.0,
    };
    // P(one request > the median) = 0.5.
    assert!((d.exceed(50.0) - 0.5).abs() < 1e-6);
    // The maximum of 3 at the true p99 is unremarkable (3% of windows show it).
    let p99 = 50.0 * (0.5f64 * 2.326).exp();
    assert!(d.sample_z(feature::LATENCY_MAX, p99, 3.0) < 2.5);
    // The median of 300 at the old p95 is impossible under the old distribution.
    let p95 = 50.0 * (0.5f64 * 1.645).exp();
    assert!(d.sample_z(feature::LATENCY_P50, p95, 300.0) > 10.0);
    // A lower median is negative evidence.
    assert!(d.sample_z(feature::LATENCY_P50, 20.0, 300.0) < -5.0);
    assert!((normal_sf(0.0) - 0.5).abs() < 1e-7);
    assert!((normal_sf(3.0) - 0.001_349_9).abs() < 1e-6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_save_is_never_overwritten_by_an_earlier_background_save() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("models.json");
    let cfg = IForestConfig::default();
    let key = SeriesKey::service("checkout");
    let mut one = std::collections::HashMap::new();
    one.insert(Arc::new(key.clone()), SeriesModel::new(&cfg, &key));
    let mut writer = persist::ModelWriter::new(&path);
    for _ in 0..20 {
        let earlier = persist::to_file(&cfg, &std::collections::HashMap::new());
        assert!(writer.write_in_background(earlier));
        writer.write_now(&persist::to_file(&cfg, &one)).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert_eq!(persist::read(&path).unwrap().series.len(), 1);
    }
}

#[test]
fn consecutive_sparse_windows_all_slower_add_up_and_the_normal_one_after_does_not_alarm() {
    // One request a window, each six times the usual median: not significant alone (about
    // 3.4 standard errors), significant three in a row.
    let (mut p, key, _) = trained(1, 200);
    let mut flagged = Vec::new();
    for k in 0..3 {
        let mut r = window_of(&key, 200 + k, &[300.0], 1.0);
        p.score(&mut r);
        flagged.push(r.anomaly.as_ref().unwrap().is_anomaly);
    }
    assert!(
        !flagged[0] && flagged[2],
        "pooled over the run: {flagged:?}"
    );
    let mut after = window_of(&key, 203, &[55.0], 1.0);
    p.score(&mut after);
    assert!(
        !after.is_anomaly(),
        "a normal window after the run is normal"
    );
    // The same slow request once, between normal ones, stays unremarkable.
    let (mut p, key, _) = trained(1, 200);
    let mut once = window_of(&key, 200, &[300.0], 1.0);
    p.score(&mut once);
    assert!(!once.is_anomaly());
}

#[test]
fn models_stay_within_max_series_and_idle_ones_expire() {
    let cfg = IForestConfig {
        max_series: 50,
        series_ttl: ConfigDuration::from_secs(3600),
        ..IForestConfig::default()
    };
    let mut p = IForestProcessor::new(&cfg, "iforest", &Telemetry::new());
    let mut real = Stream::new(7, "checkout");
    for i in 0..5000u64 {
        // A one-off series every window, and the real service all along.
        let mut junk = real.next();
        junk.series = Arc::new(SeriesKey::service(&format!("junk-{i}")));
        p.score(&mut junk);
        let mut r = real.next();
        p.score(&mut r);
        assert!(p.models.len() <= 50);
    }
    assert!(p
        .model(&SeriesKey::service("checkout"))
        .is_some_and(|m| m.learned() > 1000));
    // An hour and more later only the series still talking is kept.
    for _ in 0..3000 {
        let mut r = real.next();
        p.score(&mut r);
    }
    assert!(p.models.len() < 10, "{} models", p.models.len());
}

/// A service's log windows: ~120 records per window (Poisson-like noise), 3% warnings, an
/// error now and then, about 8 templates, no new ones.
fn log_window(rng: &mut Rng, key: &Arc<SeriesKey>, k: u64, prev: f64) -> WindowRecord {
    use crate::model::window::log_feature::*;
    let g = gauss;
    let n = (120.0 + 11.0 * g(rng)).round().max(1.0);
    let warnings = (n * 0.03 + (n * 0.03).sqrt() * g(rng)).round().max(0.0);
    let errors = if rng.unit() < 0.1 { 1.0 } else { 0.0 };
    let mut f = [0.0; N_FEATURES];
    f[LOG_COUNT] = n;
    f[ERROR_RATE] = errors / n;
    f[WARNING_RATE] = warnings / n;
    f[ERROR_COUNT] = errors;
    f[WARNING_COUNT] = warnings;
    f[TEMPLATES] = 7.0 + errors;
    f[TOP_ERROR_TEMPLATE] = errors;
    f[LOG_COUNT_CHANGE] = n / prev;
    record_at(key, k, f)
}

#[test]
fn log_windows_are_quiet_until_a_new_error_template_bursts_and_it_is_quoted() {
    use crate::model::window::log_feature::*;
    use crate::model::window::{LogLevel, TemplateCount};
    let mut p = processor();
    let key = Arc::new(SeriesKey::logs("food"));
    let mut rng = Rng::new(12);
    let mut prev = 120.0;
    let mut flagged = 0;
    for k in 0..400 {
        let mut r = log_window(&mut rng, &key, k, prev);
        prev = r.features[LOG_COUNT];
        p.score(&mut r);
        flagged += r.is_anomaly() as usize;
    }
    assert!(
        flagged <= 2,
        "{flagged} of 400 ordinary log windows flagged"
    );
    // The log series has a model of its own, beside the service's spans.
    assert!(p.model(&key).is_some() && p.model(&Arc::new(SeriesKey::service("food"))).is_none());

    let mut r = log_window(&mut rng, &key, 400, prev);
    r.features[LOG_COUNT] += 35.0;
    r.features[ERROR_COUNT] = 35.0;
    r.features[ERROR_RATE] = 35.0 / r.features[LOG_COUNT];
    r.features[NEW_TEMPLATES] = 1.0;
    r.features[NEW_ERROR_TEMPLATES] = 1.0;
    r.features[TOP_ERROR_TEMPLATE] = 35.0;
    r.templates = vec![TemplateCount {
        template: "Connection refused to <*>".into(),
        count: 35,
        level: LogLevel::Error,
        new: true,
        missing: None,
    }];
    p.score(&mut r);
    let a = r.anomaly.clone().unwrap();
    assert!(a.is_anomaly, "{a:?}");
    let names: Vec<&str> = a.contributions.iter().map(|c| c.feature).collect();
    assert!(
        names.contains(&"error_log_rate") || names.contains(&"top_error_template_count"),
        "{names:?}"
    );
    assert!(
        a.message.starts_with("food (logs): ")
            && a.message
                .contains("new ERROR template: `Connection refused to <*>` ×35, first seen"),
        "{}",
        a.message
    );
    let doc = r.to_document();
    assert_eq!(doc["window"]["signal"], "logs");
    assert_eq!(doc["features"]["error_log_count"], 35.0);
    assert!(doc["features"].get("request_count").is_none());
    assert_eq!(
        doc["logs"]["templates"][0]["template"],
        "Connection refused to <*>"
    );
    assert_eq!(doc["logs"]["templates"][0]["level"], "error");
    let back = WindowRecord::from_document(&doc).unwrap();
    assert_eq!(back.series, r.series);
    assert_eq!(back.features, r.features.map(|v| (v * 1e4).round() / 1e4));
    assert_eq!(back.templates, r.templates);
}

/// A log window of `traces` requests: each writes `Handling request` and, on the path that
/// works, `Price found`.
fn priced_window(key: &Arc<SeriesKey>, k: u64, traces: u32, found: u32) -> WindowRecord {
    use crate::model::window::log_feature::*;
    use crate::model::window::{LogLevel, TemplatePresence};
    let mut f = [0.0; N_FEATURES];
    let lines = f64::from(traces + found);
    f[LOG_COUNT] = lines;
    f[TEMPLATES] = if found > 0 { 2.0 } else { 1.0 };
    f[LOG_COUNT_CHANGE] = 1.0;
    let mut r = record_at(key, k, f);
    r.traces = u64::from(traces);
    let line = |id: u64, text: &str, n: u32| TemplatePresence {
        id,
        text: text.into(),
        traces: n,
        records: n,
        level: LogLevel::Other,
    };
    r.presence.traces = u64::from(traces);
    r.presence.templates = vec![line(1, "Handling request", traces)];
    if found > 0 {
        r.presence.templates.push(line(2, "Price found <*>", found));
    }
    r
}

#[test]
fn a_usual_line_the_requests_stop_writing_is_an_anomaly_that_names_it() {
    use crate::model::window::log_feature::*;
    let mut p = processor();
    let key = Arc::new(SeriesKey::logs("price"));
    let mut rng = Rng::new(5);
    for k in 0..200 {
        let traces = 18 + (rng.unit() * 5.0) as u32;
        let found = (f64::from(traces) * (0.8 + 0.1 * gauss(&mut rng))).round() as u32;
        let mut r = priced_window(&key, k, traces, found.min(traces));
        p.score(&mut r);
        assert!(!r.is_anomaly(), "window {k}: {:?}", r.anomaly);
    }
    // The same requests, the same line count give or take, but none finds its price.
    let mut r = priced_window(&key, 200, 20, 0);
    r.features[LOG_COUNT] = 36.0;
    p.score(&mut r);
    let a = r.anomaly.clone().unwrap();
    assert!(a.is_anomaly, "{a:?}");
    assert_eq!(a.contributions[0].feature, "template_count", "{a:?}");
    assert!(
        a.message
            .contains("usual template `Price found <*>` written by 0 of 20 traces"),
        "{}",
        a.message
    );
    let doc = r.to_document();
    assert_eq!(doc["logs"]["templates"][0]["template"], "Price found <*>");
    assert_eq!(doc["logs"]["templates"][0]["missing"]["traces"], 0);
    assert_eq!(doc["logs"]["templates"][0]["missing"]["of"], 20);
    let back = WindowRecord::from_document(&doc).unwrap();
    assert_eq!(
        back.templates,
        r.templates
            .iter()
            .map(|t| {
                let mut t = t.clone();
                if let Some(m) = t.missing.as_mut() {
                    m.expected = (m.expected * 100.0).round() / 100.0;
                }
                t
            })
            .collect::<Vec<_>>()
    );
    // Most of them still do: no news.
    let mut r = priced_window(&key, 201, 20, 14);
    p.score(&mut r);
    assert!(!r.is_anomaly(), "{:?}", r.anomaly);
    // A window whose records were partly skipped (or cut short by the shutdown) says nothing
    // about which lines were written.
    let mut r = priced_window(&key, 202, 20, 0);
    r.partial = true;
    p.score(&mut r);
    assert!(!r.is_anomaly(), "{:?}", r.anomaly);
}

#[test]
fn a_usual_line_said_not_to_be_missed_stops_alarming_and_another_line_missed_still_does() {
    use crate::model::window::log_feature::*;
    let board = FeedbackBoard::new();
    let mut p = processor().with_feedback(board.clone());
    let key = Arc::new(SeriesKey::logs("price"));
    let mut rng = Rng::new(5);
    let mut usual = |p: &mut IForestProcessor, k: u64| {
        let traces = 18 + (rng.unit() * 5.0) as u32;
        let found = (f64::from(traces) * (0.8 + 0.1 * gauss(&mut rng))).round() as u32;
        let mut r = priced_window(&key, k, traces, found.min(traces));
        p.score(&mut r);
        assert!(!r.is_anomaly(), "window {k}: {:?}", r.anomaly);
    };
    for k in 0..200 {
        usual(&mut p, k);
    }
    // No request finds its price (another line is written instead: as many templates).
    let unpriced = |k: u64| {
        let mut r = priced_window(&key, k, 20, 0);
        r.features[TEMPLATES] = 2.0;
        r
    };
    let mut r = unpriced(200);
    p.score(&mut r);
    let a = r.anomaly.clone().unwrap();
    assert!(a.is_anomaly, "{a:?}");
    assert_eq!(a.contributions[0].feature, "template_count", "{a:?}");
    // Someone says it is fine (prices are off on purpose).
    assert!(board.dismiss(r.series.clone(), r.start_ns, r.features, 1));
    p.take_feedback();
    for k in 201..206 {
        usual(&mut p, k);
    }
    let mut again = unpriced(206);
    p.score(&mut again);
    assert!(!again.is_anomaly(), "{:?}", again.anomaly);
    // Far further off is news again: none of five times as many requests finds its price.
    let mut far = priced_window(&key, 207, 100, 0);
    far.features[TEMPLATES] = 2.0;
    p.score(&mut far);
    let a = far.anomaly.clone().unwrap();
    assert!(a.is_anomaly, "{a:?}");
    assert!(
        a.contributions
            .iter()
            .any(|c| c.feature == "template_count"),
        "{a:?}"
    );
    for k in 208..212 {
        usual(&mut p, k);
    }
    // What was accepted is that line's shortfall: a window whose requests stop writing the
    // other usual line still alarms, with the same line count.
    let mut other = priced_window(&key, 212, 20, 20);
    other.presence.templates.retain(|t| t.id != 1);
    other.features[LOG_COUNT] = 20.0;
    p.score(&mut other);
    let a = other.anomaly.clone().unwrap();
    assert!(a.is_anomaly, "{a:?}");
    assert!(
        a.message
            .contains("usual template `Handling request` written by 0 of 20"),
        "{}",
        a.message
    );
}

#[test]
fn a_log_count_is_as_noisy_as_the_traces_behind_it() {
    use crate::model::window::log_feature::*;
    // Two services each writing about 52 lines a window: one a line for each of 52 requests,
    // the other 26 lines for each of 2 requests. Then a window with no line at all.
    let silent_after = |lines_per_trace: f64| {
        let mut p = processor();
        let key = Arc::new(SeriesKey::logs("svc"));
        let mut rng = Rng::new(5);
        for k in 0..60 {
            let n = (52.0 + 2.0 * gauss(&mut rng)).round();
            let mut f = [0.0; N_FEATURES];
            f[LOG_COUNT] = n;
            f[TEMPLATES] = 4.0;
            f[LOG_COUNT_CHANGE] = 1.0;
            let mut r = record_at(&key, k, f);
            r.traces = (n / lines_per_trace).round().max(1.0) as u64;
            p.score(&mut r);
        }
        let mut f = [0.0; N_FEATURES];
        f[LOG_COUNT_CHANGE] = 0.0;
        let mut r = record_at(&key, 60, f);
        p.score(&mut r);
        r.anomaly.unwrap()
    };
    let busy = silent_after(1.0);
    assert!(busy.is_anomaly, "52 requests falling silent: {busy:?}");
    assert!(busy.message.contains("log_count 0"), "{}", busy.message);
    let bursty = silent_after(26.0);
    assert!(
        !bursty.is_anomaly,
        "2 requests missing from one window: {bursty:?}"
    );
}

#[test]
fn poisson_evidence_follows_the_tail() {
    assert_eq!(poisson_z(0.0, 0.5), 0.0);
    assert_eq!(poisson_z(1.0, 2.0), 0.0, "fewer than usual is not news");
    // P(X ≥ 1 | 0.004) ≈ 0.004: z ≈ 2.65.
    assert!(
        (poisson_z(1.0, 0.004) - 2.65).abs() < 0.05,
        "{}",
        poisson_z(1.0, 0.004)
    );
    // P(X ≥ 10 | 2) ≈ 4.6e-5: z ≈ 3.91.
    assert!(
        (poisson_z(10.0, 2.0) - 3.91).abs() < 0.05,
        "{}",
        poisson_z(10.0, 2.0)
    );
    assert!(poisson_z(35.0, 0.004) > 10.0);
    assert!(poisson_z(100.0, 50.0) > 6.0);
    assert!(poisson_z(1e9, 0.001).is_finite());
}

mod metric_series {
    use super::*;
    use crate::model::window::metric_feature;

    /// A CPU gauge around 0.05 cores with 10 % noise, one point every other window.
    fn cpu(rng: &mut Rng, k: u64, value: Option<f64>) -> WindowRecord {
        let key = Arc::new(SeriesKey::metric("payments", "k8s.pod.cpu.usage"));
        let mut f = [0.0; N_FEATURES];
        f[metric_feature::VALUE_CHANGE] = 1.0;
        if k.is_multiple_of(2) || value.is_some() {
            let v = value.unwrap_or(0.05 * (1.0 + 0.1 * gauss(rng)));
            f[metric_feature::VALUE] = v;
            f[metric_feature::MIN] = v;
            f[metric_feature::MAX] = v;
            f[metric_feature::POINTS] = 1.0;
        }
        record_at(&key, k, f)
    }

    #[test]
    fn a_metric_far_beyond_its_range_is_flagged_and_its_noise_is_not() {
        let mut p = processor();
        let mut rng = Rng::new(7);
        let mut flagged = 0;
        for k in 0..400 {
            let mut r = cpu(&mut rng, k, None);
            p.score(&mut r);
            flagged += r.is_anomaly() as usize;
        }
        assert_eq!(flagged, 0, "noise of a steady gauge is not news");
        // Ten times the usual CPU.
        let mut r = cpu(&mut rng, 400, Some(0.5));
        p.score(&mut r);
        let a = r.anomaly.as_ref().unwrap();
        assert!(a.is_anomaly, "{a:?}");
        assert_eq!(a.contributions[0].feature, "metric_value");
        assert!(
            a.message
                .contains("payments (k8s.pod.cpu.usage): metric_value 0.500"),
            "{}",
            a.message
        );
        // A window without a point is no observation.
        let mut empty = cpu(&mut rng, 401, None);
        p.score(&mut empty);
        assert!(!empty.is_anomaly());
    }

    #[test]
    fn a_value_inside_the_range_seen_is_not_news() {
        let mut p = processor();
        let mut rng = Rng::new(8);
        for k in 0..200u64 {
            // Mostly 0.05, now and then a burst to 0.2 (a batch job).
            let v = if k.is_multiple_of(20) {
                0.2
            } else {
                0.05 * (1.0 + 0.05 * gauss(&mut rng))
            };
            let mut r = cpu(&mut rng, k, Some(v));
            p.score(&mut r);
        }
        let mut r = cpu(&mut rng, 200, Some(0.19));
        p.score(&mut r);
        assert!(!r.is_anomaly(), "{:?}", r.anomaly);
    }
}

mod metric_tails {
    use super::*;

    #[test]
    fn a_heavy_tailed_metric_rarely_alarms_and_a_jump_far_beyond_its_tail_does() {
        // A latency percentile of a few requests: log-normal with a wide spread.
        let mut rng = Rng::new(11);
        let draw = |rng: &mut Rng| 0.02 * (1.0 * gauss(rng)).exp();
        let mut history: Vec<f64> = (0..120).map(|_| draw(&mut rng)).collect();
        let mut alarms = 0;
        let trials = 20_000;
        for _ in 0..trials {
            let x = draw(&mut rng);
            if tail_z(&history, x, 0.02).abs() >= 4.0 {
                alarms += 1;
            }
            history.rotate_left(1);
            history[119] = x;
        }
        // A normal z of 4 is 3e-5 each side; the fitted tail must stay within a few times that.
        assert!(alarms <= 6, "{alarms} alarms in {trials} windows");
        // So noisy a series (a factor of e per standard deviation) needs a jump of four
        // orders of magnitude to be news from 120 windows: a thousand times the usual is 6.9
        // of its own deviations, and its tail is fitted, with its uncertainty, from 12 values.
        assert!(tail_z(&history, 200.0, 0.02) >= 4.0);
        // A steadier one (20 % noise): ten times the usual is far out.
        let steady: Vec<f64> = (0..120)
            .map(|_| 0.02 * (0.2 * gauss(&mut rng)).exp())
            .collect();
        assert!(tail_z(&steady, 0.2, 0.02) >= 4.0);
        assert!(tail_z(&steady, 0.03, 0.02) < 4.0);
        assert!(tail_z(&history, 0.02, 0.02) == 0.0, "inside the range");
    }

    #[test]
    fn a_metric_usually_at_zero_is_judged_against_the_range_it_has_shown() {
        // A mostly idle process's CPU over one-second windows, counted in 10 ms ticks and
        // divided by a slightly jittery interval: mostly none, now and then one tick.
        let mut rng = Rng::new(17);
        let history: Vec<f64> = (0..120)
            .map(|i| {
                if i % 6 == 0 {
                    0.01 * (1.0 + 0.01 * gauss(&mut rng))
                } else {
                    0.0
                }
            })
            .collect();
        // Two ticks is no news; twenty are.
        assert!(tail_z(&history, 0.02, 0.0) < 4.0);
        assert!(tail_z(&history, 0.2, 0.0) >= 4.0);
    }

    #[test]
    fn a_metric_counted_in_ticks_needs_more_than_one_tick_to_be_news() {
        // A near-idle process's CPU over one-second windows: usually one 10 ms tick, now and
        // then none, divided by a slightly jittery interval.
        let mut rng = Rng::new(29);
        let history: Vec<f64> = (0..120)
            .map(|i| {
                let ticks = if i % 5 == 0 { 0.0 } else { 1.0 };
                0.01 * ticks / (1.0 + 0.004 * gauss(&mut rng).abs())
            })
            .collect();
        assert_eq!(quantum(&history).map(|q| (q * 1000.0).round()), Some(10.0));
        // Two ticks are an ordinary count; twelve are not.
        assert!(tail_z(&history, 0.02 / 1.004, 0.00996) < 4.0);
        assert!(tail_z(&history, 0.12, 0.00996) >= 4.0);
        // Values spread without steps have none.
        let spread: Vec<f64> = (0..120)
            .map(|_| 0.01 * (0.3 * gauss(&mut rng)).exp())
            .collect();
        assert_eq!(quantum(&spread), None);
        assert_eq!(quantum(&[0.01; 120]), None, "one level has no step");
    }

    #[test]
    fn a_metric_that_never_moved_cannot_extrapolate_its_tail() {
        // Always 0 (a service nobody calls): its first call is the most extreme of 121, no more.
        let history = vec![0.0; 120];
        let z = tail_z(&history, 0.2, 0.0);
        assert!(z > 0.0 && z < 3.0, "{z}");
        // Steady memory: a few percent is never news, a doubling is.
        let mut rng = Rng::new(3);
        let mem: Vec<f64> = (0..120)
            .map(|_| 4e8 * (1.0 + 0.002 * gauss(&mut rng)))
            .collect();
        assert!(tail_z(&mem, 4.2e8, 4e8) < 4.0);
        assert!(tail_z(&mem, 8e8, 4e8) >= 4.0);
        // A drop is a negative z.
        assert!(tail_z(&mem, 1e8, 4e8) <= -4.0);
    }
}

/// Service `checkout`'s next window from `s`, `extra_ms` slower.
fn slower(s: &mut Stream, extra_ms: f64) -> WindowRecord {
    let mut r = s.next();
    for i in [
        feature::LATENCY_MEAN,
        feature::LATENCY_P50,
        feature::LATENCY_P95,
        feature::LATENCY_P99,
        feature::LATENCY_MAX,
    ] {
        r.features[i] += extra_ms;
    }
    r
}

#[test]
fn a_window_said_not_to_be_an_anomaly_is_learned_and_its_like_stop_alarming_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = IForestConfig {
        model_path: dir.path().join("models.json").display().to_string(),
        ..Default::default()
    };
    let board = FeedbackBoard::new();
    let mut p = IForestProcessor::new(&cfg, "x", &Telemetry::new()).with_feedback(board.clone());
    let mut s = Stream::new(31, "checkout");
    for _ in 0..200 {
        let mut r = s.next();
        p.score(&mut r);
    }
    // +60 ms on ~50 ms: flagged.
    let mut first = slower(&mut s, 60.0);
    p.score(&mut first);
    assert!(first.is_anomaly());
    let learned = p.model(&first.series).unwrap().learned();
    // Someone says it is fine: the board hands it to the processor at its next batch.
    assert!(board.dismiss(first.series.clone(), first.start_ns, first.features, 1));
    p.take_feedback();
    assert_eq!(p.model(&first.series).unwrap().learned(), learned + 1);
    for _ in 0..20 {
        let mut r = s.next();
        p.score(&mut r);
    }
    // The like of it no longer alarms (and is learned); far worse still does.
    let mut like = slower(&mut s, 60.0);
    p.score(&mut like);
    assert!(!like.is_anomaly(), "{:?}", like.anomaly);
    let mut worse = slower(&mut s, 400.0);
    p.score(&mut worse);
    assert!(worse.is_anomaly());
    // Saved with the models: a restarted processor knows it too.
    p.on_shutdown(&mut Vec::new());
    let mut q = IForestProcessor::with_saved_models(&cfg, "y", &Telemetry::new())
        .with_feedback(FeedbackBoard::new());
    let mut again = slower(&mut s, 60.0);
    q.score(&mut again);
    assert!(!again.is_anomaly(), "{:?}", again.anomaly);
}

#[test]
fn anomalies_in_an_expected_range_are_recorded_as_expected_and_the_range_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = IForestConfig {
        model_path: dir.path().join("models.json").display().to_string(),
        ..Default::default()
    };
    let board = FeedbackBoard::new();
    let mut p = IForestProcessor::new(&cfg, "x", &Telemetry::new()).with_feedback(board.clone());
    let mut s = Stream::new(32, "checkout");
    for _ in 0..200 {
        let mut r = s.next();
        p.score(&mut r);
    }
    let mut before = slower(&mut s, 400.0);
    p.score(&mut before);
    assert!(before.alerts());
    let next = s.next().start_ns;
    let range = crate::model::feedback::ExpectedRange::new(
        next,
        next + 100 * S,
        Some("checkout".into()),
        "load test".into(),
    )
    .unwrap();
    board.expect(range.clone()).unwrap();
    let mut during = slower(&mut s, 400.0);
    p.score(&mut during);
    let a = during.anomaly.as_ref().unwrap();
    assert!(a.is_anomaly && a.expected, "{a:?}");
    assert!(!during.alerts());
    assert_eq!(during.to_document()["anomaly"]["expected"], true);
    // The range is saved with the models and handed to the next process's board.
    p.take_feedback();
    p.on_shutdown(&mut Vec::new());
    let restored = FeedbackBoard::new();
    let _q = IForestProcessor::with_saved_models(&cfg, "y", &Telemetry::new())
        .with_feedback(restored.clone());
    assert_eq!(restored.expected(), vec![range]);
}

/// Two instances sharing a model store: a service that moves from `a` to `b` takes its models
/// along (no warm-up, its first window at `b` partial), `a` finds it moved at its next save and
/// stops judging its silent windows.
#[test]
fn a_service_moving_between_instances_takes_its_models_along() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = IForestConfig {
        model_store: dir.path().display().to_string(),
        ..Default::default()
    };
    let instance = |owner: &str| {
        let mut p = IForestProcessor::new(&cfg, "iforest", &Telemetry::new());
        if let Some(s) = p.store.as_mut() {
            s.owner = owner.into();
        }
        p
    };
    let (mut a, mut b) = (instance("a"), instance("b"));
    let mut s = Stream::new(7, "checkout");
    for _ in 0..200 {
        let mut r = s.next();
        a.score(&mut r);
    }
    a.save_store(true);
    let saved = store::read(dir.path(), "checkout").unwrap().unwrap();
    assert_eq!((saved.owner.as_str(), saved.series.len()), ("a", 1));

    // The balancer moves it to b mid-window: b's first window holds a third of the requests.
    let mut first = s.next();
    first.features[feature::REQUEST_COUNT] /= 3.0;
    b.score(&mut first);
    let fa = first.anomaly.clone().unwrap();
    assert!(!fa.warming_up, "the model came along");
    assert!(first.partial && !fa.is_anomaly, "{fa:?}");
    for _ in 0..20 {
        let mut r = s.next();
        b.score(&mut r);
        let an = r.anomaly.unwrap();
        assert!(!an.warming_up && !an.is_anomaly, "{an:?}");
    }
    b.save_store(true);

    // a still gets the service's (empty) windows, and at its next save learns it moved.
    let mut empty = s.next();
    empty.features = [0.0; N_FEATURES];
    a.score(&mut empty);
    a.save_store(true);
    a.take_moved();
    assert!(a.model(&s.key).is_none(), "a dropped the models");
    let mut later = s.next();
    later.features = [0.0; N_FEATURES];
    a.score(&mut later);
    assert!(later.anomaly.is_none(), "a no longer judges it");
    assert_eq!(
        store::read(dir.path(), "checkout").unwrap().unwrap().owner,
        "b"
    );
}

/// An empty span window: no requests, so no latencies; its throughput change against `prev`.
fn empty_window(key: &Arc<SeriesKey>, k: u64, prev: f64) -> WindowRecord {
    let mut f = [0.0; N_FEATURES];
    f[feature::THROUGHPUT_CHANGE] = if prev > 0.0 { 0.0 } else { 1.0 };
    record_at(key, k, f)
}

#[test]
fn a_sparse_series_is_typical_of_its_windows_with_requests() {
    // Requests in one window of three: the empty ones have no latency to be typical of.
    let mut p = processor();
    let key = Arc::new(SeriesKey::edge("gateway", "preserve"));
    let mut rng = Rng::new(11);
    for k in 0..99 {
        let mut r = if k % 3 == 0 {
            window_of(&key, k, &latencies(&mut rng, 20, 400.0), 1.0)
        } else {
            empty_window(&key, k, 20.0)
        };
        p.score(&mut r);
    }
    let mut slow = window_of(&key, 99, &latencies(&mut rng, 20, 2000.0), 1.0);
    p.score(&mut slow);
    let a = slow.anomaly.as_ref().unwrap();
    assert!(a.is_anomaly, "score {} {:?}", a.score, a.contributions);
    for c in &a.contributions {
        if c.feature == "latency_p50_ms" || c.feature == "latency_mean_ms" {
            assert!(
                (300.0..550.0).contains(&c.typical),
                "{} typical {} (halfway to the empty windows' zero?)",
                c.feature,
                c.typical
            );
        }
    }
}

#[test]
fn a_change_of_traffic_must_be_significant_for_its_counts() {
    // Two requests in every other window: the ratio of consecutive windows swings between
    // none and "×2" while the traffic is as steady as two requests a minute can be.
    let mut p = processor();
    let key = Arc::new(SeriesKey::edge("preserve", "security"));
    let mut rng = Rng::new(13);
    for k in 0..60 {
        let mut r = if k % 2 == 0 {
            window_of(&key, k, &latencies(&mut rng, 2, 50.0), 1.0)
        } else {
            empty_window(&key, k, 2.0)
        };
        p.score(&mut r);
        let a = r.anomaly.as_ref().unwrap();
        assert!(!a.is_anomaly, "window {k}: {}", a.message);
    }
    // A busy series whose traffic quadruples from one window to the next is news.
    let (mut p, key, mut rng) = trained(100, 120);
    let mut surge = window_of(&key, 120, &latencies(&mut rng, 400, 50.0), 100.0);
    p.score(&mut surge);
    let a = surge.anomaly.as_ref().unwrap();
    assert!(
        a.is_anomaly
            && a.contributions
                .iter()
                .any(|c| c.feature == "throughput_change" || c.feature == "request_count"),
        "{}",
        a.message
    );
}

#[test]
fn traffic_coming_back_after_a_pause_is_no_news_and_a_surge_past_the_usual_still_is() {
    let (mut p, key, mut rng) = trained(100, 120);
    // A pause: two requests where a hundred are usual.
    let mut pause = window_of(&key, 120, &latencies(&mut rng, 2, 50.0), 100.0);
    p.score(&mut pause);
    assert!(pause.anomaly.as_ref().unwrap().is_anomaly);
    // Back to the usual hundred: ×48 on the window before, and nothing unusual in itself.
    let mut back = window_of(&key, 121, &latencies(&mut rng, 96, 50.0), 2.0);
    p.score(&mut back);
    let a = back.anomaly.as_ref().unwrap();
    assert!(!a.is_anomaly, "{}", a.message);
    // Settling after a burst is no news either, and a surge past the usual count is.
    let mut burst = window_of(&key, 122, &latencies(&mut rng, 400, 50.0), 96.0);
    p.score(&mut burst);
    assert!(burst.anomaly.as_ref().unwrap().is_anomaly);
    let mut settled = window_of(&key, 123, &latencies(&mut rng, 100, 50.0), 400.0);
    p.score(&mut settled);
    let a = settled.anomaly.as_ref().unwrap();
    assert!(!a.is_anomaly, "{}", a.message);
}

#[test]
fn a_series_history_stays_within_its_buffers() {
    // The oldest window and score leave before the newest come: a full history keeps the
    // buffer it filled instead of doubling it.
    let cfg = IForestConfig::default();
    let key = SeriesKey::service("checkout");
    let mut m = SeriesModel::new(&cfg, &key);
    let f = [10.0, 0.0, 0.0, 5.0, 4.0, 8.0, 9.0, 9.5, 1.0, 1.0];
    let x = transform(&f);
    for _ in 0..3 * SCORE_HISTORY {
        m.learn(&f, &x, 0.3, true);
    }
    assert_eq!(m.scores.len(), SCORE_HISTORY);
    assert_eq!(m.normal.len(), TYPICAL_WINDOWS);
    assert!(
        m.scores.capacity() <= SCORE_HISTORY,
        "{}",
        m.scores.capacity()
    );
    assert!(
        m.normal.capacity() < 2 * TYPICAL_WINDOWS,
        "{}",
        m.normal.capacity()
    );
}

#[test]
fn the_history_keeps_a_window_at_single_precision_and_within_range() {
    // Typical values read back from the history are the learned ones to seven digits.
    let cfg = IForestConfig::default();
    let key = SeriesKey::service("checkout");
    let mut m = SeriesModel::new(&cfg, &key);
    let f = [1234.0, 0.01, 0.0, 12.345678, 4.0, 8.0, 9.0, 9.5, 1.0, 1.0];
    m.learn(&f, &transform(&f), 0.3, false);
    let [back] = m.normal().collect::<Vec<_>>()[..] else {
        panic!("one window learned");
    };
    assert_eq!(back[0], 1234.0);
    assert!((back[1] - 0.01).abs() < 1e-9 && (back[3] - 12.345678).abs() < 1e-5);
    // A value beyond single precision's range (a metric's) is kept as its largest, not as an
    // infinity that would poison every median and spread after it.
    let mut g = f;
    g[7] = 1e300;
    g[8] = -1e300;
    g[9] = f64::NAN;
    let n = narrow(&g);
    assert_eq!((n[7], n[8]), (f32::MAX, -f32::MAX));
    assert!(n[9].is_nan());
}

#[test]
fn the_time_between_two_services_is_judged_by_its_rises_and_not_its_traffic() {
    // A network series: 50 calls a window, 4 ms between the two services, and one call in ten
    // 200 ms more (a delayed acknowledgement).
    let mut p = processor();
    let key = Arc::new(SeriesKey::network("checkout", "payments"));
    let mut rng = Rng::new(31);
    let usual = |rng: &mut Rng| {
        let mut lat = latencies(rng, 50, 4.0);
        for l in lat.iter_mut().take(5) {
            *l += 200.0;
        }
        lat
    };
    for k in 0..200 {
        let mut r = window_of(&key, k, &usual(&mut rng), 50.0);
        p.score(&mut r);
    }
    // Every call 2 s longer than the span that served it: flagged, by the time between.
    let mut r = window_of(&key, 200, &latencies(&mut rng, 50, 2000.0), 50.0);
    p.score(&mut r);
    let a = r.anomaly.as_ref().unwrap();
    assert!(a.is_anomaly, "score {} {:?}", a.score, a.contributions);
    assert!(
        a.contributions[0].feature.starts_with("network_"),
        "{}",
        a.message
    );
    // No call delayed (its p95 far below the usual 200 ms), or a tenth of the calls (the
    // edge's record judges its traffic): no anomaly of the network series.
    let mut r = window_of(&key, 201, &latencies(&mut rng, 50, 4.0), 50.0);
    p.score(&mut r);
    let a = r.anomaly.as_ref().unwrap();
    assert!(!a.is_anomaly, "{}", a.message);
    let mut r = window_of(&key, 202, &usual(&mut rng)[45..], 50.0);
    p.score(&mut r);
    let a = r.anomaly.as_ref().unwrap();
    assert!(!a.is_anomaly, "{}", a.message);
}

#[test]
fn one_call_held_up_by_a_tcp_timer_is_no_news_and_most_calls_held_up_are() {
    // A sparse edge: two or three calls a window, 3 ms between the two services.
    let mut p = processor();
    let key = Arc::new(SeriesKey::network("gateway", "preserve"));
    let mut rng = Rng::new(47);
    for k in 0..60 {
        let mut r = window_of(
            &key,
            k,
            &latencies(&mut rng, 2 + (k % 2) as usize, 3.0),
            2.0,
        );
        p.score(&mut r);
    }
    // One of three calls 220 ms late (a retransmission after the minimum timeout): its mean is
    // 25 times the usual, but one call in a window is no evidence of the network.
    let mut calls = latencies(&mut rng, 3, 3.0);
    calls[0] += 220.0;
    let mut r = window_of(&key, 60, &calls, 3.0);
    p.score(&mut r);
    let a = r.anomaly.as_ref().unwrap();
    assert!(!a.is_anomaly, "{}", a.message);
    // Every call of a window 220 ms late: a delay between the two services.
    let calls: Vec<f64> = latencies(&mut rng, 6, 3.0)
        .iter()
        .map(|l| l + 220.0)
        .collect();
    let mut r = window_of(&key, 61, &calls, 3.0);
    p.score(&mut r);
    let a = r.anomaly.as_ref().unwrap();
    assert!(a.is_anomaly, "score {} {:?}", a.score, a.contributions);
    let first = a.contributions[0].feature;
    assert!(
        first.starts_with("network_p") || first == "network_max_ms",
        "{}",
        a.message
    );
}
