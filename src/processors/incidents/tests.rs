use super::*;
use crate::model::window::{Anomaly, Contribution, N_FEATURES};
use crate::processors::ProcessorType;
use std::collections::{BTreeMap, HashSet};

const INTERVAL: u64 = 10_000_000_000;
const T0: u64 = 1_767_571_200_000_000_000;

fn record(
    service: &str,
    target: Option<&str>,
    w: u64,
    anomaly: Option<(&'static str, f64, f64)>,
) -> WindowRecord {
    let mut features = [0.0; N_FEATURES];
    features[feature::REQUEST_COUNT] = 100.0;
    features[feature::LATENCY_P95] = 50.0;
    let series = Arc::new(match target {
        Some(t) => SeriesKey::edge(service, t),
        None => SeriesKey::service(service),
    });
    let anomaly = match anomaly {
        Some((feat, actual, typical)) => Anomaly {
            score: 0.8,
            threshold: 0.6,
            is_anomaly: true,
            severity: Some(Severity::Major),
            warming_up: false,
            contributions: vec![Contribution {
                feature: feat,
                actual,
                typical,
            }],
            message: format!("{series}: {feat} {actual} (typical {typical})"),
            incident: None,
            expected: false,
        },
        None => Anomaly {
            score: 0.3,
            threshold: 0.6,
            is_anomaly: false,
            severity: None,
            warming_up: false,
            contributions: vec![],
            message: String::new(),
            incident: None,
            expected: false,
        },
    };
    WindowRecord {
        series,
        start_ns: T0 + w * INTERVAL,
        interval_ns: INTERVAL,
        features,
        anomaly: Some(anomaly),
        partial: false,
        templates: Vec::new(),
        traces: 0,
        examples: Vec::new(),
        presence: Default::default(),
    }
}

const SLOW: Option<(&str, f64, f64)> = Some(("latency_p95_ms", 600.0, 50.0));
const ERRORS: Option<(&str, f64, f64)> = Some(("error_rate", 0.4, 0.0));
const DROP: Option<(&str, f64, f64)> = Some(("request_count", 10.0, 100.0));

/// frontend → checkout → payments, frontend → catalog, checkout → inventory; all normal.
fn normal(w: u64) -> Vec<WindowRecord> {
    vec![
        record("frontend", None, w, None),
        record("frontend", Some("checkout"), w, None),
        record("frontend", Some("catalog"), w, None),
        record("checkout", None, w, None),
        record("checkout", Some("payments"), w, None),
        record("checkout", Some("inventory"), w, None),
        record("payments", None, w, None),
        record("catalog", None, w, None),
        record("inventory", None, w, None),
    ]
}

/// A record to replace: service, target, anomaly.
type Change<'a> = (&'a str, Option<&'a str>, Option<(&'static str, f64, f64)>);

/// The normal window with some records replaced.
fn window(w: u64, changes: &[Change]) -> Vec<WindowRecord> {
    let mut recs = normal(w);
    for (s, t, a) in changes {
        for r in recs.iter_mut() {
            if &*r.series.service == *s && r.series.target.as_deref() == *t {
                *r = record(s, *t, w, *a);
            }
        }
    }
    recs
}

fn processor(resolve_after: usize) -> IncidentsProcessor {
    let cfg = IncidentsConfig {
        resolve_after,
        ..Default::default()
    };
    IncidentsProcessor::new(&cfg, "incidents", &Telemetry::new())
}

/// A processor that opens an incident for every group at once (`corroborate: false`): for the
/// tests of grouping, merging and the lifecycle, where one series in one window stands for a
/// fault. Corroboration has tests of its own.
fn pages_at_once(resolve_after: usize) -> IncidentsProcessor {
    let cfg = IncidentsConfig {
        resolve_after,
        corroborate: false,
        ..Default::default()
    };
    IncidentsProcessor::new(&cfg, "incidents", &Telemetry::new())
}

/// Runs windows through a processor; returns every event.
fn run(p: &mut IncidentsProcessor, windows: Vec<Vec<WindowRecord>>) -> Vec<IncidentEvent> {
    let mut events = Vec::new();
    for mut w in windows {
        p.on_window(&mut w, &mut events);
    }
    events
}

fn top(events: &[IncidentEvent]) -> Vec<String> {
    let last = events.last().expect("an incident event");
    last.incident
        .root_cause
        .iter()
        .map(|c| c.service.to_string())
        .collect()
}

/// How many incidents the events speak of.
fn incidents(events: &[IncidentEvent]) -> usize {
    events
        .iter()
        .map(|e| &e.incident.id)
        .collect::<HashSet<_>>()
        .len()
}

fn opened(events: &[IncidentEvent]) -> usize {
    events.iter().filter(|e| e.action == Action::Opened).count()
}

#[test]
fn a_slow_service_whose_dependencies_are_fast_is_the_cause_and_its_caller_a_victim() {
    let mut p = processor(3);
    let mut ws = vec![normal(0)];
    for w in 1..=3 {
        ws.push(window(
            w,
            &[
                ("frontend", None, SLOW),
                ("frontend", Some("checkout"), SLOW),
                ("checkout", None, SLOW),
            ],
        ));
    }
    let events = run(&mut p, ws);
    assert_eq!(opened(&events), 1, "{events:#?}");
    assert_eq!(top(&events)[0], "checkout");
    let reason = &events.last().unwrap().incident.root_cause[0].reason;
    assert!(reason.contains("downstream are normal"), "{reason}");
    let series = &events.last().unwrap().incident.series;
    assert_eq!(series.len(), 3);
}

#[test]
fn a_network_delay_seen_only_by_callers_blames_the_callee() {
    let mut p = processor(3);
    // payments' own spans are fast; only checkout's view of it is slow (and checkout waits).
    let events = run(
        &mut p,
        vec![
            normal(0),
            window(
                1,
                &[
                    ("checkout", Some("payments"), SLOW),
                    ("checkout", None, SLOW),
                    ("frontend", Some("checkout"), SLOW),
                    ("frontend", None, SLOW),
                ],
            ),
        ],
    );
    assert_eq!(opened(&events), 1);
    assert_eq!(top(&events)[0], "payments", "{:#?}", events.last());
    let reason = &events.last().unwrap().incident.root_cause[0].reason;
    assert!(
        reason.ends_with("while its own spans and its calls downstream are normal"),
        "{reason}"
    );
}

#[test]
fn a_reason_names_what_speaks_against_the_service_in_words() {
    /// Each service's reason in the incident the window opens.
    fn reasons(changes: &[Change], score: &[(&str, &str, f64)]) -> BTreeMap<String, String> {
        let mut w = window(1, changes);
        for r in w.iter_mut() {
            for (s, t, x) in score {
                if &*r.series.service == *s && r.series.target.as_deref() == Some(*t) {
                    if let Some(a) = r.anomaly.as_mut() {
                        a.score = *x;
                    }
                }
            }
        }
        let events = run(&mut processor(3), vec![normal(0), w]);
        let last = events.last().expect("an incident");
        last.incident
            .root_cause
            .iter()
            .map(|c| (c.service.to_string(), c.reason.clone()))
            .collect()
    }
    // checkout's own spans are not anomalous; both its calls are slow, the one to payments the
    // most; inventory's own spans are slow too, payments' are not.
    let r = reasons(
        &[
            ("checkout", Some("payments"), SLOW),
            (
                "checkout",
                Some("inventory"),
                Some(("latency_mean_ms", 150.0, 50.0)),
            ),
            ("inventory", None, SLOW),
        ],
        &[("checkout", "payments", 0.95)],
    );
    // A caller with nothing but its calls against it: how many, the farthest from typical, and
    // the callee that is anomalous too (not only the most anomalous call's).
    assert_eq!(
        r["checkout"],
        "checkout: both its calls downstream are anomalous (checkout → payments latency_p95_ms \
         12.0× typical); inventory downstream is anomalous too",
        "{r:#?}"
    );
    // Seen slow by its one caller, normal itself.
    assert_eq!(
        r["payments"],
        "payments: its caller sees it anomalous (checkout → payments latency_p95_ms 12.0× \
         typical) while its own spans and its calls downstream are normal",
        "{r:#?}"
    );
    // Seen slow by its caller and slow itself.
    assert_eq!(
        r["inventory"],
        "inventory: its caller sees it anomalous (checkout → inventory latency_mean_ms 3.0× \
         typical), and its own latency_p95_ms 12.0× typical while its own calls downstream are \
         normal",
        "{r:#?}"
    );
    // One call of two anomalous, its callee not: in the singular.
    let r = reasons(
        &[
            ("checkout", None, Some(("latency_mean_ms", 300.0, 50.0))),
            ("checkout", Some("payments"), SLOW),
            ("frontend", Some("checkout"), SLOW),
        ],
        &[],
    );
    assert!(
        r["checkout"]
            .ends_with("; 1 of its 2 calls downstream is anomalous while that service is not"),
        "{r:#?}"
    );
}

#[test]
fn an_error_that_propagates_up_the_chain_blames_the_deepest_service() {
    let mut p = processor(3);
    let events = run(
        &mut p,
        vec![
            normal(0),
            window(
                1,
                &[
                    ("payments", None, ERRORS),
                    ("checkout", Some("payments"), ERRORS),
                    ("checkout", None, ERRORS),
                    ("frontend", Some("checkout"), ERRORS),
                    ("frontend", None, ERRORS),
                ],
            ),
        ],
    );
    assert_eq!(opened(&events), 1);
    let ranked = top(&events);
    assert_eq!(ranked[0], "payments", "{ranked:?}");
}

#[test]
fn a_traffic_drop_at_the_entry_blames_the_entry_service() {
    let mut p = processor(3);
    let events = run(
        &mut p,
        vec![
            normal(0),
            window(
                1,
                &[
                    ("frontend", None, DROP),
                    ("frontend", Some("checkout"), DROP),
                    ("checkout", None, DROP),
                    ("checkout", Some("payments"), DROP),
                    ("payments", None, DROP),
                ],
            ),
        ],
    );
    assert_eq!(opened(&events), 1);
    let ranked = top(&events);
    assert_eq!(ranked[0], "frontend", "{ranked:?}");
    let reason = &events.last().unwrap().incident.root_cause[0].reason;
    assert!(reason.contains("entry of the call graph"), "{reason}");
}

#[test]
fn more_calls_than_usual_beside_a_slowdown_count_in_full_and_fewer_at_half() {
    // payments is slow while checkout calls inventory three times as often as usual (or a
    // tenth as often). Callers that wait send less, so beside a slowdown a fall of traffic is
    // more often an effect than a cause, and counts at half; waiting makes no rise.
    const MORE: Option<(&str, f64, f64)> = Some(("request_count", 300.0, 100.0));
    let share = |change| {
        let mut p = pages_at_once(3);
        let events = run(
            &mut p,
            vec![
                normal(0),
                window(
                    1,
                    &[
                        ("payments", None, SLOW),
                        ("checkout", Some("inventory"), change),
                        ("inventory", None, change),
                    ],
                ),
            ],
        );
        assert_eq!(incidents(&events), 1, "{events:#?}");
        let causes = &events.last().unwrap().incident.root_cause;
        assert_eq!(&*causes[0].service, "payments", "{causes:?}");
        causes
            .iter()
            .find(|c| &*c.service == "checkout")
            .map_or(0.0, |c| c.score)
    };
    let (rise, fall) = (share(MORE), share(DROP));
    assert!(rise > 1.5 * fall && fall > 0.0, "rise {rise}, fall {fall}");
    // More client errors (a 408 or 429 is what a slowdown makes) count as a fall does.
    let refused = share(Some(("client_error_rate", 0.4, 0.0)));
    assert!(
        (refused - fall).abs() < 1e-9,
        "refused {refused}, fall {fall}"
    );
}

#[test]
fn two_unrelated_faults_make_two_incidents_each_with_its_own_cause() {
    let mut p = pages_at_once(3);
    // catalog (under frontend) and inventory (under checkout) are not linked to each other.
    let events = run(
        &mut p,
        vec![
            normal(0),
            window(1, &[("catalog", None, SLOW), ("inventory", None, ERRORS)]),
        ],
    );
    assert_eq!(opened(&events), 2, "{events:#?}");
    let causes: HashSet<String> = events
        .iter()
        .filter_map(|e| e.incident.top_cause().map(str::to_string))
        .collect();
    assert_eq!(
        causes,
        ["catalog".to_string(), "inventory".to_string()].into()
    );
    let ids: HashSet<&str> = events.iter().map(|e| &*e.incident.id).collect();
    assert_eq!(ids.len(), 2);
}

#[test]
fn lifecycle_opens_updates_and_resolves_after_the_configured_normal_windows() {
    let mut p = pages_at_once(2);
    let mut all = Vec::new();
    let mut feed = |p: &mut IncidentsProcessor, mut w: Vec<WindowRecord>| {
        let mut ev = Vec::new();
        p.on_window(&mut w, &mut ev);
        all.extend(ev.clone());
        (w, ev)
    };
    feed(&mut p, normal(0));
    let (w1, ev) = feed(&mut p, window(1, &[("checkout", None, SLOW)]));
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].action, Action::Opened);
    assert!(ev[0].notable);
    let id = ev[0].incident.id.clone();
    // The anomalous window carries the incident id; normal ones do not.
    for r in &w1 {
        let a = r.anomaly.as_ref().unwrap();
        assert_eq!(a.incident.is_some(), a.is_anomaly);
    }
    assert_eq!(
        w1.iter()
            .find(|r| r.is_anomaly())
            .unwrap()
            .anomaly
            .as_ref()
            .unwrap()
            .incident,
        Some(id.clone())
    );
    // Its caller joins the next window: the same incident, updated.
    let (_, ev) = feed(
        &mut p,
        window(
            2,
            &[
                ("checkout", None, SLOW),
                ("frontend", Some("checkout"), SLOW),
            ],
        ),
    );
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].action, Action::Updated);
    assert_eq!(ev[0].incident.id, id);
    assert_eq!(ev[0].incident.series.len(), 2);
    assert_eq!(ev[0].incident.end_ns, T0 + 3 * INTERVAL);
    // One normal window: still open. The second: resolved when the third starts.
    let (_, ev) = feed(&mut p, normal(3));
    assert!(ev.is_empty());
    let (_, ev) = feed(&mut p, normal(4));
    assert!(ev.is_empty(), "{ev:#?}");
    let (_, ev) = feed(&mut p, normal(5));
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].action, Action::Resolved);
    assert_eq!(ev[0].incident.status, Status::Resolved);
    assert_eq!(ev[0].incident.id, id);
    assert_eq!(ev[0].at_ns, T0 + 5 * INTERVAL);
    assert_eq!(p.open_incidents(), 0);
    // A new anomaly later is a new incident.
    let (_, ev) = feed(&mut p, window(6, &[("checkout", None, SLOW)]));
    assert_eq!(ev[0].action, Action::Opened);
    assert_ne!(ev[0].incident.id, id);
}

#[test]
fn ids_are_stable_across_replays() {
    let ws = || vec![normal(0), window(1, &[("checkout", None, SLOW)])];
    let a = run(&mut pages_at_once(3), ws());
    let b = run(&mut pages_at_once(3), ws());
    assert_eq!(a[0].incident.id, b[0].incident.id);
    assert_eq!(a[0].incident.id.len(), 16);
}

#[test]
fn a_record_linking_two_incidents_merges_them_into_the_older() {
    let mut p = pages_at_once(5);
    let mut events = run(
        &mut p,
        vec![normal(0), window(1, &[("catalog", None, SLOW)])],
    );
    events.extend(run(
        &mut p,
        vec![window(
            2,
            &[("catalog", None, SLOW), ("checkout", None, SLOW)],
        )],
    ));
    // catalog and checkout are not linked directly: two incidents.
    assert_eq!(opened(&events), 2, "{events:#?}");
    // frontend links both (it calls catalog and checkout).
    let ev = run(
        &mut p,
        vec![window(
            3,
            &[
                ("catalog", None, SLOW),
                ("checkout", None, SLOW),
                ("frontend", None, SLOW),
            ],
        )],
    );
    let resolved: Vec<_> = ev.iter().filter(|e| e.action == Action::Resolved).collect();
    assert_eq!(resolved.len(), 1, "{ev:#?}");
    assert!(resolved[0].incident.message.contains("merged into"));
    assert_eq!(p.open_incidents(), 1);
}

#[test]
fn a_merge_leaves_the_other_groups_of_the_window_with_their_own_incidents() {
    // catalog and checkout open two incidents, search (no calls) a third; in window 3
    // frontend merges the first two, and search's group must still find its own incident.
    let with_search = |w: u64, changes: &[Change]| {
        let mut recs = window(w, changes);
        recs.push(record("search", None, w, SLOW));
        recs
    };
    let mut p = pages_at_once(5);
    let mut events = run(
        &mut p,
        vec![normal(0), window(1, &[("catalog", None, SLOW)])],
    );
    events.extend(run(
        &mut p,
        vec![with_search(
            2,
            &[("catalog", None, SLOW), ("checkout", None, SLOW)],
        )],
    ));
    assert_eq!(opened(&events), 3, "{events:#?}");
    let search_id = events
        .iter()
        .rfind(|e| e.incident.series.iter().any(|s| &*s.service == "search"))
        .map(|e| e.incident.id.clone())
        .unwrap();
    let mut w3 = with_search(
        3,
        &[
            ("catalog", None, SLOW),
            ("checkout", None, SLOW),
            ("frontend", None, SLOW),
        ],
    );
    let mut ev = Vec::new();
    p.on_window(&mut w3, &mut ev);
    assert_eq!(p.open_incidents(), 2, "{ev:#?}");
    let search = w3.iter().find(|r| &*r.series.service == "search").unwrap();
    assert_eq!(search.anomaly.as_ref().unwrap().incident, Some(search_id));
}

#[test]
fn shutdown_resolves_open_incidents_cleanly() {
    let mut p = pages_at_once(3);
    run(
        &mut p,
        vec![normal(0), window(1, &[("checkout", None, SLOW)])],
    );
    let mut out = Vec::new();
    p.on_shutdown(&mut out);
    let Payload::Incidents(ev) = &out[0].payload else {
        panic!("incident events expected");
    };
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].action, Action::Resolved);
    assert!(ev[0].incident.message.contains("otelwatch stopped"));
    assert_eq!(p.open_incidents(), 0);
}

#[test]
fn records_pass_through_with_the_incident_events_after_them() {
    let mut p = pages_at_once(3);
    let mut records = normal(0);
    records.extend(window(1, &[("checkout", None, SLOW)]));
    let mut out = Vec::new();
    p.process(
        Batch {
            items: records.len(),
            payload: Payload::Windows(Arc::new(records)),
            encoded: None,
            held: Default::default(),
        },
        &mut out,
    );
    assert_eq!(out.len(), 2);
    assert!(matches!(&out[0].payload, Payload::Windows(w) if w.len() == 18));
    assert!(matches!(&out[1].payload, Payload::Incidents(e) if e.len() == 1));
}

#[test]
fn config_errors_name_their_path() {
    let v: serde_norway::Value = serde_norway::from_str("resolve_after: 0\nmax_open: 0").unwrap();
    let errs = IncidentsConfig::parse("processors.incidents", v).unwrap_err();
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "processors.incidents.resolve_after",
            "processors.incidents.max_open"
        ]
    );
}

#[test]
fn a_starved_caller_whose_every_call_is_slow_is_the_cause_not_its_callees() {
    let mut p = processor(3);
    // checkout is 900 ms slower itself; both of its calls are 150 ms slower (its CPU is
    // starved: everything it does is slow); payments and inventory are fast in their own spans.
    let call = Some(("latency_p95_ms", 200.0, 50.0));
    let own = Some(("latency_p95_ms", 950.0, 50.0));
    let events = run(
        &mut p,
        vec![
            normal(0),
            window(
                1,
                &[
                    ("checkout", None, own),
                    ("checkout", Some("payments"), call),
                    ("checkout", Some("inventory"), call),
                    ("frontend", Some("checkout"), own),
                    ("frontend", None, own),
                ],
            ),
        ],
    );
    assert_eq!(top(&events)[0], "checkout", "{:#?}", events.last());
    assert_eq!(
        events.last().expect("an incident").incident.root_cause[0].reason,
        "checkout: its caller sees it anomalous (frontend → checkout latency_p95_ms 19.0× \
         typical), and its own latency_p95_ms 19.0× typical; both its calls downstream are \
         anomalous while those services are not"
    );
}

#[test]
fn a_slow_call_that_accounts_for_its_callers_slowness_blames_the_callee() {
    let mut p = processor(3);
    // checkout → payments got 1 s slower and checkout got 1 s slower: the call explains it.
    let slow_call = Some(("latency_p95_ms", 1010.0, 10.0));
    let slow_own = Some(("latency_p95_ms", 1050.0, 50.0));
    let events = run(
        &mut p,
        vec![
            normal(0),
            window(
                1,
                &[
                    ("checkout", None, slow_own),
                    ("checkout", Some("payments"), slow_call),
                    ("frontend", Some("checkout"), slow_own),
                ],
            ),
        ],
    );
    assert_eq!(top(&events)[0], "payments", "{:#?}", events.last());
}

/// Adds causes to a window's record of `service` (→ `target`).
fn with_causes(
    w: &mut [WindowRecord],
    service: &str,
    target: Option<&str>,
    causes: &[(&'static str, f64, f64)],
) {
    for r in w.iter_mut() {
        if &*r.series.service == service && r.series.target.as_deref() == target {
            if let Some(a) = r.anomaly.as_mut() {
                a.contributions
                    .extend(
                        causes
                            .iter()
                            .map(|&(feature, actual, typical)| Contribution {
                                feature,
                                actual,
                                typical,
                            }),
                    );
            }
        }
    }
}

#[test]
fn a_callers_slowness_is_set_against_its_calls_on_the_same_statistic() {
    let mut p = processor(3);
    // One request at checkout waited 800 ms on payments: checkout's p99 and its mean rose, and
    // so did the call's mean (by as much as checkout's) and spread, but not the call's p99,
    // whose recent windows held such a request before. Checkout's p99 (790 ms more) is not to
    // be set against the call's mean (18.5 ms more): the two means say the call explains it.
    let mut w = window(
        1,
        &[
            ("checkout", None, Some(("latency_p99_ms", 850.0, 60.0))),
            (
                "checkout",
                Some("payments"),
                Some(("latency_stddev_ms", 120.0, 5.0)),
            ),
            ("payments", None, Some(("latency_p99_ms", 820.0, 30.0))),
        ],
    );
    with_causes(&mut w, "checkout", None, &[("latency_mean_ms", 68.4, 50.0)]);
    with_causes(
        &mut w,
        "checkout",
        Some("payments"),
        &[("latency_mean_ms", 28.5, 10.0)],
    );
    with_causes(&mut w, "payments", None, &[("latency_mean_ms", 26.0, 8.0)]);
    let events = run(&mut p, vec![normal(0), w]);
    assert_eq!(top(&events)[0], "payments", "{:#?}", events.last());
}

#[test]
fn a_delay_on_a_services_network_stays_with_it_not_with_its_calls() {
    let mut p = processor(3);
    // A network delay at checkout's pod: frontend waits 2 s more for checkout, whose own spans
    // are only 300 ms slower (its calls out go through the same network: checkout → payments is
    // 300 ms slower, in checkout's view); payments' own spans are normal. The 1.7 s that
    // frontend waited beyond checkout's own spans were spent between the two: that part is
    // checkout's. (The call checkout → payments alone cannot tell a delay at checkout's network
    // from one at payments', so payments is named beside it.)
    let edge = Some(("latency_p95_ms", 2050.0, 50.0));
    let own = Some(("latency_p95_ms", 350.0, 50.0));
    let call = Some(("latency_p95_ms", 310.0, 10.0));
    let events = run(
        &mut p,
        vec![
            normal(0),
            window(
                1,
                &[
                    ("frontend", None, edge),
                    ("frontend", Some("checkout"), edge),
                    ("checkout", None, own),
                    ("checkout", Some("payments"), call),
                ],
            ),
        ],
    );
    let causes = &events.last().expect("an incident").incident.root_cause;
    let checkout = causes.iter().position(|c| &*c.service == "checkout");
    assert!(
        checkout.is_some_and(|i| i < 2 && causes[i].score >= 0.4),
        "{causes:#?}"
    );
}

#[test]
fn how_far_a_callees_own_spans_explain_a_call_to_it_is_measured_on_one_statistic() {
    // frontend waits 1 s more on checkout in the mean of its calls (its p99 is 500 ms more);
    // checkout's own spans are 100 ms slower in the mean (its p99 1 s more, all of it a slow
    // call to payments). On the mean, checkout's own spans explain a tenth of frontend's wait:
    // the rest was spent between the two, and stays with checkout. Set against its p99 they
    // would explain half of it, and pass half on to payments.
    let mut w = window(
        1,
        &[
            (
                "frontend",
                Some("checkout"),
                Some(("latency_mean_ms", 1050.0, 50.0)),
            ),
            ("checkout", None, Some(("latency_p99_ms", 1100.0, 100.0))),
            (
                "checkout",
                Some("payments"),
                Some(("latency_p99_ms", 1100.0, 100.0)),
            ),
        ],
    );
    with_causes(
        &mut w,
        "frontend",
        Some("checkout"),
        &[("latency_p99_ms", 600.0, 100.0)],
    );
    with_causes(
        &mut w,
        "checkout",
        None,
        &[("latency_mean_ms", 150.0, 50.0)],
    );
    with_causes(
        &mut w,
        "checkout",
        Some("payments"),
        &[("latency_mean_ms", 150.0, 50.0)],
    );
    let events = run(&mut processor(3), vec![normal(0), w]);
    let causes = &events.last().expect("an incident").incident.root_cause;
    let score = |s: &str| {
        causes
            .iter()
            .find(|c| &*c.service == s)
            .map_or(0.0, |c| c.score)
    };
    assert!(score("checkout") > 1.5 * score("frontend"), "{causes:#?}");
}

#[test]
fn a_series_that_is_often_anomalous_weighs_less_than_one_that_rarely_is() {
    let mut rates = rates::BaseRates::default();
    let noisy = SeriesKey::service("catalog");
    let quiet = SeriesKey::service("payments");
    let fresh = surprisal_of(&rates, &quiet);
    for w in 0..200 {
        let mut recs = normal(w);
        if w % 5 == 0 {
            recs.retain(|r| *r.series != noisy);
            recs.push(record("catalog", None, w, SLOW));
        }
        rates.observe(&recs);
    }
    let (n, q) = (surprisal_of(&rates, &noisy), surprisal_of(&rates, &quiet));
    assert!(
        n < fresh && fresh < q,
        "noisy {n}, fresh {fresh}, quiet {q}"
    );
    // About -ln(0.2 * 200 / 300 + ...) for the noisy one: an anomaly in five windows.
    assert!((1.0..2.5).contains(&n), "{n}");
}

fn surprisal_of(rates: &rates::BaseRates, s: &SeriesKey) -> f64 {
    rates.surprisal(s)
}

#[test]
fn a_chronically_noisy_service_does_not_outrank_the_one_a_fault_made_anomalous() {
    let mut p = processor(1);
    // catalog is slow every other window for a long time; then payments' callers see it slow
    // while catalog is slow as well, as much.
    let mut ws = Vec::new();
    for w in 0..200 {
        if w % 2 == 0 {
            ws.push(window(w, &[("frontend", Some("catalog"), SLOW)]));
        } else {
            ws.push(normal(w));
        }
    }
    ws.push(window(
        200,
        &[
            ("frontend", Some("catalog"), SLOW),
            ("checkout", Some("payments"), SLOW),
        ],
    ));
    let events = run(&mut p, ws);
    let last = events.last().unwrap();
    assert_eq!(top(&events)[0], "payments", "{last:#?}");
}

#[test]
fn at_max_open_a_lone_reading_does_not_close_an_announced_incident() {
    let cfg = IncidentsConfig {
        resolve_after: 3,
        max_open: 1,
        ..Default::default()
    };
    let mut p = IncidentsProcessor::new(&cfg, "incidents", &Telemetry::new());
    let fault = [
        ("checkout", Some("payments"), SLOW),
        ("payments", None, SLOW),
    ];
    let mut second = fault.to_vec();
    second.push(("catalog", None, ERRORS));
    // payments' incident is open; catalog, not connected to it, fails in one series.
    let events = run(&mut p, vec![window(0, &fault), window(1, &second)]);
    assert_eq!(opened(&events), 1, "{events:#?}");
    assert!(
        events.iter().all(|e| e.action != Action::Resolved),
        "{events:#?}"
    );
    assert_eq!(p.open_incidents(), 1);
}

#[test]
fn a_service_many_callers_see_slow_counts_once_not_once_per_caller() {
    // Three callers see inventory ten times slower (one fact, seen three times); in the same
    // window catalog fails two requests in five where it never fails (another fact, seen once).
    // inventory's slowness is one piece of evidence however many call it: its strongest view
    // counts, and catalog's failure is the stronger fact. Summed per caller, inventory led.
    let mut p = processor(3);
    let callers = ["frontend", "checkout", "search"];
    let slow = Some(("latency_p95_ms", 500.0, 50.0));
    let build = |w: u64, fault: bool| {
        let mut v = vec![
            record("catalog", None, w, if fault { ERRORS } else { None }),
            record("frontend", Some("catalog"), w, None),
            record("inventory", None, w, None),
        ];
        for c in callers {
            v.push(record(c, None, w, None));
            v.push(record(
                c,
                Some("inventory"),
                w,
                if fault { slow } else { None },
            ));
        }
        v
    };
    let events = run(&mut p, vec![build(0, false), build(1, true)]);
    let last = events.last().unwrap();
    assert_eq!(incidents(&events), 1, "{events:#?}");
    assert_eq!(top(&events)[..2], ["catalog", "inventory"], "{last:#?}");
}

#[test]
fn an_incident_ranks_by_its_evidence_not_by_its_count_of_windows() {
    let mut p = processor(3);
    // checkout is a little slow for three windows; in the third, payments fails badly. The
    // incident holds both, and what it says is payments' failure: one window with much
    // evidence outweighs two with little (as a mean of each window's shares it did not).
    let faint = Some(("latency_p95_ms", 60.0, 50.0));
    let ws = vec![
        window(0, &[("checkout", None, faint)]),
        window(1, &[("checkout", None, faint)]),
        window(2, &[("checkout", None, faint), ("payments", None, ERRORS)]),
    ];
    let events = run(&mut p, ws);
    let last = events.last().unwrap();
    assert_eq!(incidents(&events), 1, "{events:#?}");
    assert_eq!(top(&events)[0], "payments", "{last:#?}");
}

/// A metric record of `service`: anomalous with `feature` actual/typical, or normal.
fn metric(
    service: &str,
    name: &str,
    w: u64,
    anomaly: Option<(&'static str, f64, f64)>,
) -> WindowRecord {
    let mut r = record(service, None, w, anomaly);
    r.series = Arc::new(SeriesKey::metric(service, name));
    r.features = [0.0; N_FEATURES];
    r.features[crate::model::window::metric_feature::POINTS] = 1.0;
    r
}

const CPU_UP: Option<(&str, f64, f64)> = Some(("metric_value", 0.9, 0.05));

#[test]
fn a_cpu_rise_at_a_slow_callee_is_evidence_of_its_own() {
    // A slow call with one caller and one callee is shared between them; the callee's CPU,
    // many times its usual, moves the blame its way.
    let caller_share = |cpu: bool| {
        let mut p = processor(3);
        let mut ws = vec![normal(0)];
        for w in 1..=3 {
            let mut recs = window(w, &[("checkout", Some("payments"), SLOW)]);
            if cpu {
                recs.push(metric("payments", "k8s.pod.cpu.usage", w, CPU_UP));
            }
            recs.push(metric("checkout", "k8s.pod.cpu.usage", w, None));
            ws.push(recs);
        }
        let events = run(&mut p, ws);
        let ranking = events
            .last()
            .expect("an incident")
            .incident
            .root_cause
            .clone();
        assert_eq!(&*ranking[0].service, "payments", "{ranking:#?}");
        if cpu {
            assert!(
                ranking[0].reason.contains("k8s.pod.cpu.usage"),
                "{ranking:#?}"
            );
        }
        let score = |s: &str| {
            ranking
                .iter()
                .find(|c| &*c.service == s)
                .map_or(0.0, |c| c.score)
        };
        score("checkout") / score("payments")
    };
    let (with_cpu, without) = (caller_share(true), caller_share(false));
    assert!(with_cpu < without, "with {with_cpu}, without {without}");
}

#[test]
fn a_lone_metric_reading_opens_no_incident_and_a_persisting_one_does() {
    let mut p = processor(3);
    let mut once = normal(1);
    once.push(metric("catalog", "k8s.pod.cpu.usage", 1, CPU_UP));
    let events = run(
        &mut p,
        vec![normal(0), once.clone(), normal(2), normal(3), normal(4)],
    );
    assert_eq!(opened(&events), 0, "{events:#?}");
    // Twice within resolve_after windows: it persists, and is paged.
    let mut again = normal(6);
    again.push(metric("catalog", "k8s.pod.cpu.usage", 6, CPU_UP));
    let mut first = normal(5);
    first.push(metric("catalog", "k8s.pod.cpu.usage", 5, CPU_UP));
    let events = run(&mut p, vec![first, again]);
    assert_eq!(opened(&events), 1, "{events:#?}");
    // With a span anomaly of its service it joins at once.
    let mut p = processor(3);
    let mut both = window(1, &[("catalog", None, SLOW)]);
    both.push(metric("catalog", "k8s.pod.cpu.usage", 1, CPU_UP));
    let mut events = Vec::new();
    p.on_window(&mut both, &mut events);
    assert_eq!(opened(&events), 1);
    assert!(both
        .iter()
        .filter(|r| r.is_anomaly())
        .all(|r| r.anomaly.as_ref().is_some_and(|a| a.incident.is_some())));
}

#[test]
fn one_series_anomalous_in_one_window_opens_no_incident_and_a_second_piece_of_evidence_does() {
    let counted = |p: &IncidentsProcessor| p.uncorroborated.get();
    // One reading of one series: counted, no page; its record stays an anomaly without one.
    let mut p = processor(3);
    let mut once = window(1, &[("catalog", None, SLOW)]);
    let mut events = run(&mut p, vec![normal(0)]);
    p.on_window(&mut once, &mut events);
    events.extend(run(
        &mut p,
        vec![normal(2), normal(3), normal(4), normal(5)],
    ));
    assert!(
        events.is_empty(),
        "no event, not even a resolve: {events:#?}"
    );
    assert_eq!(counted(&p), 1);
    assert_eq!(p.open_incidents(), 0);
    assert!(once
        .iter()
        .filter(|r| r.is_anomaly())
        .all(|r| r.anomaly.as_ref().is_some_and(|a| a.incident.is_none())));
    // The same series again within resolve_after windows: it persists, and is paged then, as
    // an incident that started with its first window.
    let events = run(
        &mut p,
        vec![
            window(6, &[("catalog", None, SLOW)]),
            normal(7),
            window(8, &[("catalog", None, SLOW)]),
        ],
    );
    assert_eq!(opened(&events), 1, "{events:#?}");
    assert_eq!(events[0].incident.start_ns, T0 + 6 * INTERVAL);
    assert_eq!(events[0].incident.end_ns, T0 + 9 * INTERVAL);
    // A service and its caller's view of it, in one window: two series, paged at once.
    let mut p = processor(3);
    let events = run(
        &mut p,
        vec![
            normal(0),
            window(
                1,
                &[
                    ("checkout", None, SLOW),
                    ("frontend", Some("checkout"), SLOW),
                ],
            ),
        ],
    );
    assert_eq!(opened(&events), 1, "{events:#?}");
    assert_eq!(top(&events)[0], "checkout");
    // Its spans and its logs: two signals, paged at once.
    let mut p = processor(3);
    let mut both = window(1, &[("catalog", None, SLOW)]);
    let mut logs = record("catalog", None, 1, Some(("error_log_rate", 0.5, 0.0)));
    logs.series = Arc::new(SeriesKey::logs("catalog"));
    both.push(logs);
    let events = run(&mut p, vec![normal(0), both]);
    assert_eq!(opened(&events), 1, "{events:#?}");
    // Its spans in one window and its request-duration metric, exported later, in the next:
    // two readings of the same slow requests, paged with the second.
    let mut p = processor(3);
    let mut late = normal(2);
    late.push(metric("catalog", "http.server.duration", 2, CPU_UP));
    let events = run(
        &mut p,
        vec![normal(0), window(1, &[("catalog", None, SLOW)]), late],
    );
    assert_eq!(opened(&events), 1, "{events:#?}");
    assert_eq!(top(&events)[0], "catalog");
    // Two metrics of one service are not two pieces of evidence, together or one after the
    // other.
    let mut p = processor(3);
    let mut metrics = normal(1);
    metrics.push(metric("catalog", "k8s.pod.cpu.usage", 1, CPU_UP));
    metrics.push(metric("catalog", "k8s.pod.memory.usage", 1, CPU_UP));
    let mut memory = normal(2);
    memory.push(metric("catalog", "k8s.pod.memory.usage", 2, CPU_UP));
    let mut cpu = normal(3);
    cpu.push(metric("catalog", "k8s.pod.cpu.usage", 3, CPU_UP));
    let events = run(&mut p, vec![normal(0), metrics]);
    assert_eq!(opened(&events), 0, "{events:#?}");
    let mut p = processor(3);
    let events = run(&mut p, vec![normal(0), normal(1), memory, cpu]);
    assert_eq!(opened(&events), 0, "{events:#?}");
    // Without corroboration one series' window is paged at once.
    let events = run(
        &mut pages_at_once(3),
        vec![normal(0), window(1, &[("catalog", None, SLOW)])],
    );
    assert_eq!(opened(&events), 1, "{events:#?}");
}

#[test]
fn a_metric_of_the_services_calls_is_not_evidence_against_it() {
    // checkout's client request durations rise because payments answers slowly.
    let mut p = processor(3);
    let mut ws = vec![normal(0)];
    for w in 1..=2 {
        let mut recs = window(w, &[("checkout", Some("payments"), SLOW)]);
        recs.push(metric(
            "checkout",
            "http.client.request.duration",
            w,
            Some(("metric_p95", 2.0, 0.05)),
        ));
        ws.push(recs);
    }
    let events = run(&mut p, ws);
    let ranking = &events.last().expect("an incident").incident.root_cause;
    assert_eq!(&*ranking[0].service, "payments", "{ranking:#?}");
    assert!(
        ranking.iter().all(|c| !c.reason.contains("http.client")),
        "{ranking:#?}"
    );
}

#[test]
fn a_callers_request_duration_metric_read_after_its_slow_call_does_not_blame_it() {
    // payments is slow in window 1; checkout's own request-duration histogram, exported at
    // its interval, shows it in window 2, when every span is normal again.
    let mut p = processor(3);
    let slow = window(
        1,
        &[
            ("payments", None, SLOW),
            ("checkout", Some("payments"), SLOW),
            ("checkout", None, SLOW),
        ],
    );
    let mut after = normal(2);
    after.push(metric(
        "checkout",
        "http.server.request.duration",
        2,
        Some(("metric_p95", 0.6, 0.05)),
    ));
    let events = run(&mut p, vec![normal(0), slow, after]);
    let ranking = &events.last().expect("an incident").incident.root_cause;
    assert_eq!(&*ranking[0].service, "payments", "{ranking:#?}");
    // A service that is not traced has only its metrics to speak for it.
    let mut p = processor(3);
    let ws = (0..3)
        .map(|w| {
            let mut recs = normal(w);
            recs.push(metric(
                "billing",
                "http.server.request.duration",
                w,
                (w > 0).then_some(("metric_p95", 0.6, 0.05)),
            ));
            recs
        })
        .collect();
    let events = run(&mut p, ws);
    let ranking = &events.last().expect("an incident").incident.root_cause;
    assert_eq!(&*ranking[0].service, "billing", "{ranking:#?}");
}

#[test]
fn a_falling_metric_counts_less_than_a_rising_one() {
    let catalog_score = |cpu: (&'static str, f64, f64)| {
        let mut p = processor(3);
        let mut ws = vec![normal(0)];
        for w in 1..=2 {
            let mut recs = window(w, &[("frontend", Some("catalog"), SLOW)]);
            recs.push(metric("catalog", "k8s.pod.cpu.usage", w, Some(cpu)));
            ws.push(recs);
        }
        let events = run(&mut p, ws);
        let ranking = &events.last().expect("an incident").incident.root_cause;
        ranking
            .iter()
            .find(|c| &*c.service == "catalog")
            .map_or(0.0, |c| c.score)
    };
    let rise = catalog_score(("metric_value", 0.8, 0.2));
    let fall = catalog_score(("metric_value", 0.05, 0.2));
    assert!(rise > fall, "rise {rise}, fall {fall}");
}

mod shared {
    use super::*;
    use crate::processors::incidents::join::{Hub, MemberStage};
    use crate::processors::Processor;
    use std::sync::Mutex;
    use std::time::Duration;

    fn batch(records: Vec<WindowRecord>) -> Batch {
        Batch {
            items: records.len(),
            payload: Payload::Windows(Arc::new(records)),
            encoded: None,
            held: Default::default(),
        }
    }

    fn windows(out: &[Batch]) -> Vec<WindowRecord> {
        out.iter()
            .filter_map(|b| match &b.payload {
                Payload::Windows(w) => Some(w.iter().cloned().collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn incident_events(out: &[Batch]) -> usize {
        out.iter()
            .map(|b| match &b.payload {
                Payload::Incidents(e) => e.len(),
                _ => 0,
            })
            .sum()
    }

    fn hub(wait: Duration) -> Arc<Mutex<Hub>> {
        Arc::new(Mutex::new(Hub::new(pages_at_once(3), wait)))
    }

    #[test]
    fn pipelines_sharing_incidents_are_judged_together_window_by_window() {
        let hub = hub(Duration::from_secs(600));
        let mut spans = MemberStage::join(hub.clone());
        let mut metrics = MemberStage::join(hub);
        let mut out_spans = Vec::new();
        let mut out_metrics = Vec::new();
        // Window 0 normal in both; window 1: the spans say checkout → payments is slow.
        spans.process(batch(normal(0)), &mut out_spans);
        assert!(
            out_spans.is_empty(),
            "window 0 waits for the metrics pipeline"
        );
        metrics.process(
            batch(vec![metric("payments", "k8s.pod.cpu.usage", 0, None)]),
            &mut out_metrics,
        );
        spans.process(
            batch(window(1, &[("checkout", Some("payments"), SLOW)])),
            &mut out_spans,
        );
        // Window 0 is complete: each pipeline gets its own records back.
        spans.on_tick(&mut out_spans);
        assert_eq!(windows(&out_spans).len(), normal(0).len());
        assert_eq!(windows(&out_metrics).len(), 1);
        // Window 1 arrives from the metrics pipeline, with payments' CPU up.
        metrics.process(
            batch(vec![metric("payments", "k8s.pod.cpu.usage", 1, CPU_UP)]),
            &mut out_metrics,
        );
        spans.on_tick(&mut out_spans);
        let joined: Vec<WindowRecord> = windows(&out_spans)
            .into_iter()
            .chain(windows(&out_metrics))
            .filter(|r| r.is_anomaly())
            .collect();
        assert_eq!(joined.len(), 2, "{joined:#?}");
        let ids: HashSet<_> = joined
            .iter()
            .map(|r| r.anomaly.as_ref().and_then(|a| a.incident.clone()))
            .collect();
        assert_eq!(
            ids.len(),
            1,
            "one incident for the slow call and the CPU: {ids:?}"
        );
        assert!(ids.iter().all(Option::is_some));
        // Incident events go out once, through the first pipeline.
        assert_eq!(incident_events(&out_spans), 1);
        assert_eq!(incident_events(&out_metrics), 0);
        // Stopping: the last one to stop resolves what is open.
        let mut end_spans = Vec::new();
        let mut end_metrics = Vec::new();
        spans.on_shutdown(&mut end_spans);
        metrics.on_shutdown(&mut end_metrics);
        assert_eq!(
            incident_events(&end_spans) + incident_events(&end_metrics),
            1
        );
    }

    #[test]
    fn a_pipeline_that_stops_first_takes_all_its_records_with_it() {
        let hub = hub(Duration::from_secs(600));
        let mut spans = MemberStage::join(hub.clone());
        let mut logs = MemberStage::join(hub);
        let mut out_spans = Vec::new();
        for w in 0..3 {
            spans.process(batch(normal(w)), &mut out_spans);
        }
        // The logs pipeline has delivered nothing yet: every window waits for it.
        assert!(windows(&out_spans).is_empty());
        spans.on_shutdown(&mut out_spans);
        assert_eq!(windows(&out_spans).len(), 3 * normal(0).len());
        // The logs' records of those windows come later, and are judged as they come.
        let mut out_logs = Vec::new();
        let mut late = normal(1);
        late.truncate(2);
        logs.process(batch(late), &mut out_logs);
        logs.on_shutdown(&mut out_logs);
        assert_eq!(windows(&out_logs).len(), 2);
    }

    #[test]
    fn a_pipeline_that_delivers_nothing_holds_the_others_up_only_for_join_wait() {
        let hub = hub(Duration::from_millis(50));
        let mut spans = MemberStage::join(hub.clone());
        let _silent = MemberStage::join(hub);
        let mut out = Vec::new();
        spans.process(batch(normal(0)), &mut out);
        assert!(out.is_empty());
        std::thread::sleep(Duration::from_millis(80));
        spans.on_tick(&mut out);
        assert_eq!(windows(&out).len(), normal(0).len());
    }

    #[test]
    fn one_pipeline_is_judged_as_its_windows_arrive() {
        let mut alone = MemberStage::join(hub(Duration::from_secs(600)));
        let mut out = Vec::new();
        alone.process(batch(normal(0)), &mut out);
        alone.process(batch(window(1, &[("checkout", None, SLOW)])), &mut out);
        assert_eq!(windows(&out).len(), 2 * normal(0).len());
        assert_eq!(incident_events(&out), 1);
    }
}

#[test]
fn a_usual_log_line_a_service_stopped_writing_is_its_own_evidence_and_named() {
    use crate::model::window::{LogLevel, Missing, TemplateCount};
    let logs = |service: &str, anomaly| {
        let mut r = record(service, None, 1, anomaly);
        r.series = Arc::new(SeriesKey::logs(service));
        r
    };
    let mut w = normal(1);
    // checkout's requests no longer write `Payment authorised` (an exception before it);
    // frontend, which calls it, logs fewer lines.
    let mut checkout = logs("checkout", Some(("template_count", 3.0, 4.0)));
    checkout.templates = vec![TemplateCount {
        template: "Payment authorised <*>".into(),
        count: 0,
        level: LogLevel::Other,
        new: false,
        missing: Some(Missing {
            traces: 0,
            expected: 15.2,
            of: 19,
        }),
    }];
    w.push(checkout);
    w.push(logs("frontend", Some(("log_count", 40.0, 60.0))));
    let events = run(&mut pages_at_once(3), vec![normal(0), w]);
    assert_eq!(top(&events)[0], "checkout", "{events:#?}");
    let reason = &events[0].incident.root_cause[0].reason;
    assert!(
        reason.contains("usual log line `Payment authorised <*>` written by 0 of 19 traces"),
        "{reason}"
    );
}

/// A network record of `caller → callee` in window `w`: normal, or its calls `ms` beyond the
/// spans that served them (typically 4).
fn network(caller: &str, callee: &str, w: u64, ms: Option<f64>) -> WindowRecord {
    let mut r = record(
        caller,
        Some(callee),
        w,
        ms.map(|ms| ("network_mean_ms", ms, 4.0)),
    );
    r.series = Arc::new(SeriesKey::network(caller, callee));
    r
}

#[test]
fn a_delay_between_two_services_is_the_one_whose_other_calls_are_on_time() {
    // frontend calls checkout and catalog; admin calls checkout too. Every record of spans is
    // as usual but frontend's own latency: each call to checkout took 2 s more beyond
    // checkout's own spans (checkout's requests are often that slow, so the edge's latency is
    // no news; the time between the two is).
    let delayed = |w: u64, slow: &[(&str, &str)]| {
        let mut recs = window(
            w,
            &[("frontend", None, Some(("latency_mean_ms", 2400.0, 400.0)))],
        );
        for (a, b) in [
            ("frontend", "checkout"),
            ("frontend", "catalog"),
            ("admin", "checkout"),
            ("checkout", "payments"),
        ] {
            let ms = slow.contains(&(a, b)).then_some(2004.0);
            recs.push(network(a, b, w, ms));
        }
        recs
    };
    // The delay is at checkout: frontend's other call is on time, and frontend's slowness is
    // the time its call spent between the two.
    let mut p = processor(3);
    let events = run(
        &mut p,
        vec![normal(0), delayed(1, &[("frontend", "checkout")])],
    );
    let causes = &events.last().expect("an incident").incident.root_cause;
    assert_eq!(&*causes[0].service, "checkout", "{causes:#?}");
    assert!(
        causes[0]
            .reason
            .contains("frontend → checkout network_mean_ms 501.0× typical"),
        "{}",
        causes[0].reason
    );
    // The delay is at frontend: every call it makes waits, while checkout's other caller does
    // not.
    let mut p = processor(3);
    let events = run(
        &mut p,
        vec![
            normal(0),
            delayed(1, &[("frontend", "checkout"), ("frontend", "catalog")]),
        ],
    );
    let causes = &events.last().expect("an incident").incident.root_cause;
    assert_eq!(&*causes[0].service, "frontend", "{causes:#?}");
}

#[test]
fn an_edges_network_record_beside_its_record_of_spans_is_one_piece_of_evidence() {
    // One slow call makes both the edge's latency and its time between the two services
    // anomalous: the same calls seen twice, not two pieces of evidence.
    let slow_call = |w: u64| {
        let mut recs = window(w, &[("checkout", Some("payments"), SLOW)]);
        recs.push(network("checkout", "payments", w, Some(300.0)));
        recs
    };
    let mut p = processor(3);
    let events = run(&mut p, vec![normal(0), slow_call(1), normal(2)]);
    assert_eq!(opened(&events), 0, "{events:#?}");
    // Persisting, it is news.
    let mut p = processor(3);
    let events = run(&mut p, vec![normal(0), slow_call(1), slow_call(2)]);
    assert_eq!(opened(&events), 1, "{events:#?}");
}
