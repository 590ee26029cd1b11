//! The files in `monitoring/`: the alert rules pass `promtool check rules` and their
//! unit tests pass `promtool test rules`; the Prometheus config passes `promtool check
//! config`; every Grafana dashboard is well-formed and queries the provisioned data
//! source. (That each metric they name is exported is checked in `observability.rs`.)

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn monitoring() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../monitoring")
}

/// Files in `folder` ending in `suffix`.
fn files(folder: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found
}

/// Runs promtool in `monitoring/`; `None` when it is not installed (and not required).
fn promtool(args: &[&str]) -> Option<String> {
    let output = match Command::new("promtool")
        .args(args)
        .current_dir(monitoring())
        .output()
    {
        Ok(output) => output,
        Err(err) => {
            assert!(
                std::env::var_os("EDGEWISE_REQUIRE_PROMTOOL").is_none(),
                "EDGEWISE_REQUIRE_PROMTOOL is set but promtool cannot run: {err} \
                 (Debian: apt-get install prometheus)"
            );
            eprintln!("skipping: promtool is not installed");
            return None;
        }
    };
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{log}");
    Some(log)
}

fn rule_files() -> Vec<String> {
    let rules = files(&monitoring().join("rules"), ".yml");
    rules
        .iter()
        .filter(|path| !path.to_string_lossy().ends_with(".test.yml"))
        .map(|path| {
            format!(
                "rules/{}",
                path.file_name().unwrap_or_default().to_string_lossy()
            )
        })
        .collect()
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let rules = rule_files();
    assert!(!rules.is_empty(), "no rule files in monitoring/rules");
    let mut args = vec!["check", "rules"];
    args.extend(rules.iter().map(String::as_str));
    let Some(checked) = promtool(&args) else {
        return;
    };
    eprintln!("{checked}");
    let tests: Vec<String> = files(&monitoring().join("rules"), ".test.yml")
        .iter()
        .map(|path| {
            format!(
                "rules/{}",
                path.file_name().unwrap_or_default().to_string_lossy()
            )
        })
        .collect();
    assert!(!tests.is_empty(), "no rule unit tests in monitoring/rules");
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let tested = promtool(&args).unwrap_or_default();
    assert!(tested.contains("SUCCESS"), "{tested}");
    let rules_text: String = rules
        .iter()
        .map(|file| std::fs::read_to_string(monitoring().join(file)).expect("rules"))
        .collect();
    let tests_text: String = tests
        .iter()
        .map(|file| std::fs::read_to_string(monitoring().join(file)).expect("tests"))
        .collect();
    for alert in [
        "EdgewiseNodeOffline",
        "EdgewiseHighErrorRate",
        "EdgewiseHighLatency",
        "EdgewiseFeatureDrift",
        "EdgewiseRolloutHalted",
        "EdgewiseStaleTelemetry",
        "EdgewiseOutboxGrowing",
    ] {
        assert!(
            rules_text.contains(&format!("alert: {alert}")),
            "no rule {alert}"
        );
        assert!(tests_text.contains(alert), "no unit test for {alert}");
    }
}

#[test]
fn prometheus_config_passes_promtool_check() {
    if let Some(log) = promtool(&["check", "config", "prometheus.yml"]) {
        eprintln!("{log}");
    }
}

#[test]
fn grafana_dashboards_are_provisioned_and_query_prometheus() {
    let grafana = monitoring().join("grafana");
    for provisioning in [
        "provisioning/datasources/prometheus.yml",
        "provisioning/dashboards/edgewise.yml",
    ] {
        assert!(
            grafana.join(provisioning).is_file(),
            "missing {provisioning}"
        );
    }
    let dashboards = files(&grafana.join("dashboards"), ".json");
    let titles: Vec<String> = dashboards
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).expect("read dashboard");
            let dashboard: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            let uid = dashboard["uid"].as_str().unwrap_or_default();
            assert!(!uid.is_empty(), "{} has no uid", path.display());
            let panels = dashboard["panels"].as_array().expect("panels");
            let queries: Vec<&Value> = panels
                .iter()
                .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
                .collect();
            assert!(!queries.is_empty(), "{} has no queries", path.display());
            for query in queries {
                assert!(
                    query["expr"]
                        .as_str()
                        .is_some_and(|e| e.to_lowercase().contains("edgewise")),
                    "{}: query about nothing of Edgewise's: {query}",
                    path.display()
                );
            }
            for panel in panels.iter().filter(|p| p["type"] != "row") {
                let source = panel["datasource"]["uid"].as_str();
                assert!(
                    matches!(source, Some("edgewise-prometheus") | Some("${datasource}")),
                    "{}: panel {} does not use the provisioned data source",
                    path.display(),
                    panel["title"]
                );
            }
            dashboard["title"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert!(titles.len() >= 4, "dashboards: {titles:?}");
}
