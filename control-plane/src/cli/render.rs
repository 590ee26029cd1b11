//! Printing answers: aligned tables for people, JSON with `--json`.

use serde::Serialize;

/// Prints `value` as pretty JSON.
pub fn json<T: Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// Prints rows under a header, each column as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// `value` or `-`.
pub fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A model metric as a table cell, `-` when absent.
pub fn metric(metrics: &serde_json::Value, name: &str) -> String {
    metrics
        .get(name)
        .and_then(serde_json::Value::as_f64)
        .map_or_else(|| "-".into(), |v| format!("{v:.3}"))
}

/// Prints a model's aliases.
pub fn aliases(json_output: bool, aliases: &std::collections::BTreeMap<String, u64>) {
    if json_output {
        json(aliases);
    } else {
        let rows: Vec<Vec<String>> = aliases
            .iter()
            .map(|(a, v)| vec![a.clone(), v.to_string()])
            .collect();
        table(&["alias", "version"], &rows);
    }
}
