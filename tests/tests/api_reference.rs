//! `docs/api.md` and `docs/openapi.json` are generated from the control plane's OpenAPI
//! document, so the reference never drifts from the code. When the API changes, run
//! `EDGEWISE_UPDATE_DOCS=1 cargo test --test api_reference` and commit the result.

use std::fmt::Write as _;
use std::path::PathBuf;

use edgewise_control_plane::api::ApiDoc;
use serde_json::Value;
use utoipa::OpenApi;

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

/// A schema as a short type description, with links to named schemas.
fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("[{name}](#{})", name.to_lowercase());
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema[combinator].as_array() {
            let parts: Vec<String> = options.iter().map(type_of).collect();
            return parts.join(if combinator == "allOf" {
                " and "
            } else {
                " or "
            });
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
        return format!("one of {}", values.join(", "));
    }
    let kinds: Vec<String> = match &schema["type"] {
        Value::String(kind) => vec![kind.clone()],
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect(),
        _ => vec![],
    };
    let described: Vec<String> = kinds
        .iter()
        .map(|kind| match kind.as_str() {
            "array" => format!("array of {}", type_of(&schema["items"])),
            "object" if schema["additionalProperties"].is_object() => {
                format!("map of {}", type_of(&schema["additionalProperties"]))
            }
            other => match schema["format"].as_str() {
                Some(format) => format!("{other} ({format})"),
                None => other.to_owned(),
            },
        })
        .collect();
    if described.is_empty() {
        "any".to_owned()
    } else {
        described.join(" or ")
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn render_operation(out: &mut String, method: &str, path: &str, operation: &Value) {
    let _ = writeln!(out, "### `{} {path}`\n", method.to_uppercase());
    for key in ["summary", "description"] {
        if let Some(text) = operation[key].as_str().filter(|t| !t.is_empty()) {
            let _ = writeln!(out, "{text}\n");
        }
    }
    if let Some(parameters) = operation["parameters"].as_array().filter(|p| !p.is_empty()) {
        out.push_str("| Parameter | In | Type | Required | Description |\n|---|---|---|---|---|\n");
        for parameter in parameters {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                parameter["name"].as_str().unwrap_or_default(),
                parameter["in"].as_str().unwrap_or_default(),
                type_of(&parameter["schema"]),
                if parameter["required"] == true {
                    "yes"
                } else {
                    "no"
                },
                one_line(parameter["description"].as_str().unwrap_or_default())
            );
        }
        out.push('\n');
    }
    if let Some(content) = operation["requestBody"]["content"].as_object() {
        for (media, body) in content {
            let _ = writeln!(
                out,
                "Request body (`{media}`): {}\n",
                type_of(&body["schema"])
            );
        }
    }
    if let Some(responses) = operation["responses"].as_object() {
        out.push_str("| Status | Meaning | Body |\n|---|---|---|\n");
        for (status, response) in responses {
            let body = response["content"]
                .as_object()
                .and_then(|content| content.values().next())
                .map(|media| type_of(&media["schema"]))
                .unwrap_or_else(|| "-".to_owned());
            let _ = writeln!(
                out,
                "| {status} | {} | {body} |",
                one_line(response["description"].as_str().unwrap_or_default())
            );
        }
        out.push('\n');
    }
}

fn render_schema(out: &mut String, name: &str, schema: &Value) {
    let _ = writeln!(out, "### {name}\n");
    if let Some(text) = schema["description"].as_str() {
        let _ = writeln!(out, "{}\n", one_line(text));
    }
    let Some(properties) = schema["properties"].as_object() else {
        let _ = writeln!(out, "Type: {}\n", type_of(schema));
        return;
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str("| Field | Type | Required | Description |\n|---|---|---|---|\n");
    for (field, property) in properties {
        let _ = writeln!(
            out,
            "| `{field}` | {} | {} | {} |",
            type_of(property),
            if required.contains(&field.as_str()) {
                "yes"
            } else {
                "no"
            },
            one_line(property["description"].as_str().unwrap_or_default())
        );
    }
    out.push('\n');
}

/// An operation: its method, its path and its OpenAPI object.
type Operation = (String, String, Value);

/// The whole reference, grouped by tag in the document's order.
fn render(document: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# REST API reference\n\n<!-- Generated from the OpenAPI document by tests/tests/api_reference.rs; do not edit. -->\n\n\
         {} {}. The machine-readable document is [openapi.json](openapi.json), and a running \
         control plane serves it at `/api/v1/openapi.json`. Every error answer is a JSON \
         [ErrorBody](#errorbody) naming the field and what was expected.\n",
        document["info"]["title"].as_str().unwrap_or_default(),
        document["info"]["version"].as_str().unwrap_or_default()
    );
    let mut by_tag: Vec<(String, Vec<Operation>)> = Vec::new();
    for (path, methods) in document["paths"].as_object().into_iter().flatten() {
        for (method, operation) in methods.as_object().into_iter().flatten() {
            let tag = operation["tags"][0].as_str().unwrap_or("other").to_owned();
            let entry = match by_tag.iter().position(|(name, _)| *name == tag) {
                Some(at) => &mut by_tag[at].1,
                None => {
                    by_tag.push((tag, Vec::new()));
                    &mut by_tag.last_mut().expect("just pushed").1
                }
            };
            entry.push((method.clone(), path.clone(), operation.clone()));
        }
    }
    for (tag, operations) in &by_tag {
        let _ = writeln!(out, "## {tag}\n");
        for (method, path, operation) in operations {
            render_operation(&mut out, method, path, operation);
        }
    }
    out.push_str("## Schemas\n\n");
    for (name, schema) in document["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        render_schema(&mut out, name, schema);
    }
    out.trim_end().to_owned() + "\n"
}

#[test]
fn the_api_reference_matches_the_openapi_document() {
    let document = serde_json::to_value(ApiDoc::openapi()).expect("OpenAPI as JSON");
    let json = serde_json::to_string_pretty(&document).expect("pretty JSON") + "\n";
    let markdown = render(&document);
    let (json_path, markdown_path) = (docs().join("openapi.json"), docs().join("api.md"));
    if std::env::var_os("EDGEWISE_UPDATE_DOCS").is_some() {
        std::fs::write(&json_path, &json).expect("write openapi.json");
        std::fs::write(&markdown_path, &markdown).expect("write api.md");
        return;
    }
    let stale = |path: &PathBuf, fresh: &str| {
        std::fs::read_to_string(path).map_or(true, |current| current != fresh)
    };
    assert!(
        !stale(&json_path, &json) && !stale(&markdown_path, &markdown),
        "docs/api.md or docs/openapi.json is out of date: run EDGEWISE_UPDATE_DOCS=1 cargo test --test api_reference"
    );
    assert!(markdown.contains("### `POST /api/v1/models/{name}/versions`"));
}
