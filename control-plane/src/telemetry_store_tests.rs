//! Tests of [`TelemetryStore`]: windows in segment files, their index, retention,
//! crash recovery and the move from sled.

use super::*;
use edgewise_core::capture::LateLabel;

fn window(device: &str, seq: u64) -> TelemetryWindow {
    TelemetryWindow {
        device_id: device.into(),
        window_seq: seq,
        model: "m".into(),
        version: 1,
        started_at: String::new(),
        ended_at: String::new(),
        requests: 10,
        errors: 0,
        examples: 10,
        latency_buckets: vec![10],
        latency_samples: Vec::new(),
        batch_sizes: Vec::new(),
        class_counts: vec![10],
        features: Vec::new(),
        labelled: 0,
        correct: 0,
        shadow: None,
        captures: Vec::new(),
        late_labels: Vec::new(),
    }
}

fn capture(id: &str, label: Option<&str>) -> CaptureRecord {
    CaptureRecord {
        id: Some(id.into()),
        model: "m".into(),
        version: 1,
        captured_at: "2026-01-01T00:00:00Z".into(),
        inputs: vec![1.0, 2.0],
        prediction: "a".into(),
        label: label.map(str::to_owned),
    }
}

struct Opened {
    _dir: tempfile::TempDir,
    store: Store,
    telemetry: TelemetryStore,
    segments: std::path::PathBuf,
}

fn open() -> Opened {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("store")).expect("store");
    let segments = dir.path().join("telemetry");
    let telemetry = TelemetryStore::open(store.clone(), &segments).expect("telemetry");
    Opened {
        _dir: dir,
        store,
        telemetry,
        segments,
    }
}

fn seqs(windows: &[StoredWindow]) -> Vec<(String, u64)> {
    windows
        .iter()
        .map(|w| (w.window.device_id.clone(), w.window.window_seq))
        .collect()
}

#[test]
fn a_window_is_stored_once_and_found_by_device_group_and_time() {
    let opened = open();
    let telemetry = &opened.telemetry;
    assert!(telemetry.ingest("g", window("a", 1)).expect("ingest"));
    assert!(telemetry.ingest("g", window("b", 1)).expect("ingest"));
    assert!(telemetry.ingest("h", window("a", 2)).expect("ingest"));
    assert!(!telemetry.ingest("g", window("a", 1)).expect("resend"));
    assert!(telemetry.contains("a", 2).expect("contains"));
    assert!(!telemetry.contains("a", 3).expect("contains"));

    let all = telemetry.windows(&TelemetryQuery::default()).expect("all");
    assert_eq!(
        seqs(&all),
        [("a".into(), 1), ("b".into(), 1), ("a".into(), 2)]
    );
    let device = TelemetryQuery {
        device: Some("a".into()),
        ..TelemetryQuery::default()
    };
    assert_eq!(
        seqs(&telemetry.windows(&device).expect("device")),
        [("a".into(), 1), ("a".into(), 2)]
    );
    let group = TelemetryQuery {
        group: Some("h".into()),
        since_seconds: Some(60),
        ..TelemetryQuery::default()
    };
    assert_eq!(
        seqs(&telemetry.windows(&group).expect("group")),
        [("a".into(), 2)]
    );
    assert_eq!(
        telemetry
            .summary(&TelemetryQuery::default())
            .expect("sum")
            .requests,
        30
    );
    let newest = telemetry.last_received_at().expect("newest").expect("some");
    assert!(newest + 5 >= now_seconds());
}

#[test]
fn late_labels_reach_their_captures() {
    let opened = open();
    let telemetry = &opened.telemetry;
    let mut first = window("a", 1);
    first.captures = vec![capture("r1", None), capture("r2", Some("b"))];
    telemetry.ingest("g", first).expect("ingest");
    let mut second = window("a", 2);
    second.late_labels = vec![LateLabel {
        id: "r1".into(),
        label: "c".into(),
    }];
    telemetry.ingest("g", second).expect("ingest");

    let captures = telemetry.captures_by_device("m").expect("captures");
    let labels: Vec<_> = captures
        .iter()
        .map(|(device, c)| (device.as_str(), c.label.as_deref()))
        .collect();
    assert_eq!(labels, [("a", Some("c")), ("a", Some("b"))]);
    assert!(telemetry.captures("other", None).expect("none").is_empty());
}

#[test]
fn retention_deletes_whole_segments_and_their_index() {
    let opened = open();
    let telemetry = &opened.telemetry;
    let old = StoredWindow {
        group: "g".into(),
        received_at: now_seconds() - 3 * SEGMENT_SECONDS,
        window: window("a", 1),
    };
    assert!(telemetry.append(&old).expect("append"));
    telemetry.ingest("g", window("a", 2)).expect("ingest");

    assert_eq!(
        telemetry
            .expire(Duration::from_secs(SEGMENT_SECONDS))
            .expect("expire"),
        1
    );
    let left = telemetry.windows(&TelemetryQuery::default()).expect("all");
    assert_eq!(seqs(&left), [("a".into(), 2)]);
    assert!(!telemetry.contains("a", 1).expect("contains"));
    assert_eq!(std::fs::read_dir(&opened.segments).expect("dir").count(), 1);
}

#[test]
fn a_restart_cuts_lines_that_were_never_indexed() {
    let opened = open();
    opened
        .telemetry
        .ingest("g", window("a", 1))
        .expect("ingest");
    opened.telemetry.flush().expect("flush");
    // What a crash between the append and the index leaves: a whole line, and a torn one.
    let segment = std::fs::read_dir(&opened.segments)
        .expect("dir")
        .next()
        .expect("a segment")
        .expect("entry")
        .path();
    let line = serde_json::to_vec(&StoredWindow {
        group: "g".into(),
        received_at: now_seconds(),
        window: window("a", 2),
    })
    .expect("json");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .expect("open");
    std::io::Write::write_all(&mut file, &line).expect("write");
    std::io::Write::write_all(&mut file, b"\n{\"torn\":").expect("write");
    drop(file);

    let reopened = TelemetryStore::open(opened.store.clone(), &opened.segments).expect("reopen");
    let all = reopened.windows(&TelemetryQuery::default()).expect("all");
    assert_eq!(seqs(&all), [("a".into(), 1)]);
    // The node sends window 2 again; it is stored this time, and a time range finds it.
    assert!(reopened.ingest("g", window("a", 2)).expect("resend"));
    let recent = TelemetryQuery {
        since_seconds: Some(60),
        ..TelemetryQuery::default()
    };
    assert_eq!(
        seqs(&reopened.windows(&recent).expect("recent")),
        [("a".into(), 1), ("a".into(), 2)]
    );
}

#[test]
fn windows_kept_in_sled_by_earlier_versions_move_to_segments() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("store")).expect("store");
    let stored = StoredWindow {
        group: "g".into(),
        received_at: now_seconds() - 30,
        window: {
            let mut w = window("a", 7);
            w.captures = vec![capture("r1", None)];
            w
        },
    };
    let key = "a/00000000000000000007";
    store
        .table("windows")
        .expect("t")
        .put(key, &stored)
        .expect("put");
    store
        .table("windows_by_time")
        .expect("t")
        .put(
            &format!("{:010}/{key}", stored.received_at),
            &key.to_owned(),
        )
        .expect("put");
    store
        .table("captures")
        .expect("t")
        .put("m/a/00000000000000000007/0000", &capture("r1", Some("z")))
        .expect("put");

    let telemetry =
        TelemetryStore::open(store.clone(), &dir.path().join("telemetry")).expect("open");
    let all = telemetry.windows(&TelemetryQuery::default()).expect("all");
    assert_eq!(seqs(&all), [("a".into(), 7)]);
    assert_eq!(all[0].received_at, stored.received_at);
    let captures = telemetry.captures("m", None).expect("captures");
    assert_eq!(captures[0].label.as_deref(), Some("z"));
    let old: Table<StoredWindow> = store.table("windows").expect("t");
    assert!(old.last_key().expect("key").is_none());
}

#[test]
fn lines_lost_from_a_segment_leave_no_index_behind() {
    let opened = open();
    let telemetry = &opened.telemetry;
    // All in the previous segment, at known seconds.
    let start = segment_of(now_seconds()) - SEGMENT_SECONDS;
    let at = |offset: u64, seq: u64| StoredWindow {
        group: "g".into(),
        received_at: start + offset,
        window: window("a", seq),
    };
    assert!(telemetry.append(&at(10, 1)).expect("append"));
    let segment = std::fs::read_dir(&opened.segments)
        .expect("dir")
        .next()
        .expect("segment")
        .expect("entry")
        .path();
    let first_len = std::fs::metadata(&segment).expect("metadata").len();
    assert!(telemetry.append(&at(60, 2)).expect("append"));
    assert!(telemetry.append(&at(70, 3)).expect("append"));
    telemetry.flush().expect("flush");
    // A power cut loses the last two lines; the index still names them.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open")
        .set_len(first_len)
        .expect("truncate");

    let reopened = TelemetryStore::open(opened.store.clone(), &opened.segments).expect("reopen");
    assert!(!reopened.contains("a", 2).expect("contains"));
    assert!(reopened.append(&at(80, 4)).expect("append"));
    // A time range from second 75 starts at window 4, not where window 3 was.
    let since_75 = TelemetryQuery {
        since_seconds: Some(now_seconds() - (start + 75)),
        ..TelemetryQuery::default()
    };
    assert_eq!(
        seqs(&reopened.windows(&since_75).expect("range")),
        [("a".into(), 4)]
    );
    // The node sends window 2 again, and it is stored.
    assert!(reopened.ingest("g", window("a", 2)).expect("resend"));
}
