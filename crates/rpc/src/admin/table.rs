//! Answers of the admin commands as aligned text tables, for `peerpool admin`.

use serde_json::Value;

use super::commands::duration_text;

/// A table: a header and rows of cells, numbers aligned right.
#[derive(Clone, Debug, Default)]
pub struct Table {
    header: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns; `right[i]`: column `i` is aligned right.
    pub fn new(columns: &[(&str, bool)]) -> Table {
        Table {
            header: columns.iter().map(|(h, _)| h.to_string()).collect(),
            right: columns.iter().map(|(_, r)| *r).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are blank).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as lines, columns two spaces apart, no trailing blanks.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate().take(widths.len()) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, w) in widths.iter().enumerate() {
                let c = cells.get(i).map_or("", String::as_str);
                if i > 0 {
                    out.push_str("  ");
                }
                if self.right[i] {
                    out.push_str(&format!("{c:>w$}"));
                } else {
                    out.push_str(&format!("{c:<w$}"));
                }
            }
            out.trim_end().to_string()
        };
        let mut out = line(&self.header);
        for row in &self.rows {
            out.push('\n');
            out.push_str(&line(row));
        }
        out
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{}", f.round() as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn kb(v: &Value) -> String {
    (v.as_u64().unwrap_or(0) / 1024).to_string()
}

fn secs(v: &Value) -> String {
    duration_text(v.as_f64().unwrap_or(0.0) as u64)
}

fn ago(v: &Value, now: u64) -> String {
    match v.as_u64() {
        None | Some(0) => "never".into(),
        Some(t) => format!("{} ago", duration_text(now.saturating_sub(t))),
    }
}

/// Renders the answer of `method` for a person; `None` when the answer does not have the
/// expected shape (print it as JSON then).
pub fn render(method: &str, result: &Value) -> Option<String> {
    match method {
        "sessions" => {
            let mut t = Table::new(&[
                ("ID", true),
                ("Flags", false),
                ("Client", false),
                ("Proto", true),
                ("Cost", true),
                ("GCost", true),
                ("Reqs", true),
                ("Recv", true),
                ("Recv KB", true),
                ("Sent", true),
                ("Sent KB", true),
                ("Time", true),
                ("Peer", false),
            ]);
            for r in result.as_array()? {
                let r = r.as_array().filter(|r| r.len() == 15)?;
                t.row(vec![
                    text(&r[0]),
                    text(&r[1]),
                    text(&r[3]),
                    text(&r[4]),
                    text(&r[5]),
                    text(&r[6]),
                    text(&r[7]),
                    text(&r[10]),
                    kb(&r[11]),
                    text(&r[12]),
                    kb(&r[13]),
                    secs(&r[14]),
                    text(&r[2]),
                ]);
            }
            Some(t.render())
        }
        "groups" => {
            let mut t = Table::new(&[
                ("Name", false),
                ("Sessions", true),
                ("Cost", true),
                ("GCost", true),
                ("Reqs", true),
                ("Recv", true),
                ("Recv KB", true),
                ("Sent", true),
                ("Sent KB", true),
            ]);
            for r in result.as_array()? {
                let r = r.as_array().filter(|r| r.len() == 11)?;
                t.row(vec![
                    text(&r[0]),
                    text(&r[1]),
                    text(&r[2]),
                    text(&r[3]),
                    text(&r[4]),
                    text(&r[7]),
                    kb(&r[8]),
                    text(&r[9]),
                    kb(&r[10]),
                ]);
            }
            Some(t.render())
        }
        "peers" => {
            let now = super::commands::now().as_secs();
            let mut t = Table::new(&[
                ("Host", false),
                ("Port", true),
                ("Status", false),
                ("Services", true),
                ("Last good", true),
                ("Last try", true),
                ("Tries", true),
                ("Source", false),
            ]);
            for p in result.as_array()? {
                let host = p.get("host")?.as_str()?;
                let port = &p["features"]["hosts"][host]["tcp_port"];
                t.row(vec![
                    host.to_string(),
                    text(port),
                    text(&p["status"]),
                    format!("{:#x}", p["features"]["services"].as_u64().unwrap_or(0)),
                    ago(&p["last_good"], now),
                    ago(&p["last_try"], now),
                    text(&p["try_count"]),
                    text(&p["source"]),
                ]);
            }
            Some(t.render())
        }
        "disconnect" | "log" => {
            let lines: Option<Vec<&str>> = result.as_array()?.iter().map(Value::as_str).collect();
            Some(lines?.join("\n"))
        }
        "getinfo" => {
            let mut rows = Vec::new();
            flatten("", result.as_object()?, &mut rows);
            let mut t = Table::new(&[("", false), ("", false)]);
            for (k, v) in rows {
                t.row(vec![k, v]);
            }
            // The header of a key/value list is blank: drop its line.
            let out = t.render();
            Some(
                out.split_once('\n')
                    .map_or(String::new(), |(_, rest)| rest.to_string()),
            )
        }
        _ => None,
    }
}

fn flatten(prefix: &str, obj: &serde_json::Map<String, Value>, rows: &mut Vec<(String, String)>) {
    for (k, v) in obj {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix} {k}")
        };
        match v {
            Value::Object(inner) => flatten(&key, inner, rows),
            Value::Array(list) => {
                rows.push((key, list.iter().map(text).collect::<Vec<_>>().join(", ")))
            }
            other => rows.push((key, text(other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(&[("Name", false), ("N", true)]);
        t.row(vec!["a".into(), "1000".into()]);
        t.row(vec!["longer".into(), "2".into()]);
        assert_eq!(t.render(), "Name       N\na       1000\nlonger     2");
    }

    #[test]
    fn answers_of_the_wrong_shape_are_not_tables() {
        assert!(render("sessions", &json!([[1, 2]])).is_none());
        assert!(render("sessions", &json!({"a": 1})).is_none());
        assert!(render("nosuch", &json!([])).is_none());
        assert_eq!(
            render("log", &json!(["logging session 3"])).unwrap(),
            "logging session 3"
        );
        let info = render("getinfo", &json!({"pid": 7, "sessions": {"count": 2}})).unwrap();
        assert_eq!(info, "pid             7\nsessions count  2");
    }
}
