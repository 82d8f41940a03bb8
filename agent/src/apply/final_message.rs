//! `final_message`: the line cloud-init prints when it is done (`cc_final_message`, every
//! boot, the end of the final stage), rendered with cloud-init's variables: `$uptime`,
//! `$timestamp`, `$version`, `$datasource` (and upper case, and `${…}`), or `{{ uptime }}` after a
//! `## template: jinja` first line. Harnesses wait for it on the console.

use std::borrow::Cow;

/// The message when `final_message` is absent or blank (cloud-init's, with metaboot's name).
pub const DEFAULT_MESSAGE: &str = "## template: jinja\nmetaboot v. {{version}} finished at \
                                   {{timestamp}}. Datasource {{datasource}}.  Up {{uptime}} seconds";

/// The variables a message may use.
#[derive(Debug, Clone)]
pub struct Values {
    pub uptime: String,
    pub timestamp: String,
    pub version: String,
    pub datasource: String,
}

impl Values {
    fn get(&self, name: &str) -> Option<&str> {
        match name {
            "uptime" | "UPTIME" => Some(&self.uptime),
            "timestamp" | "TIMESTAMP" => Some(&self.timestamp),
            "version" | "VERSION" => Some(&self.version),
            "datasource" | "DATASOURCE" => Some(&self.datasource),
            _ => None,
        }
    }
}

/// A rendered message and what in it was not rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// Each variable the message names that does not exist (left as written), and each jinja
    /// statement (left as written: only `{{ name }}` is rendered).
    pub left: Vec<String>,
}

/// Renders `message` (blank: [`DEFAULT_MESSAGE`]) as cloud-init's templater does: a first line
/// `## template: jinja` or `## template: basic` picks the syntax and is dropped; without one,
/// basic. What cannot be rendered stays as written and is reported (cloud-init prints nothing
/// then).
pub fn render(message: &str, values: &Values) -> Result<Rendered, String> {
    let message = message.trim();
    let message = if message.is_empty() {
        DEFAULT_MESSAGE
    } else {
        message
    };
    let (first, rest) = message.split_once('\n').unwrap_or((message, ""));
    let kind = first
        .strip_prefix("##")
        .map(str::trim_start)
        .and_then(|line| strip_prefix_ignore_case(line, "template:"))
        .map(|kind| kind.trim().to_ascii_lowercase());
    let mut left = Vec::new();
    let text = match kind.as_deref() {
        None => basic(message, values, &mut left),
        Some("basic") => basic(rest, values, &mut left),
        Some("jinja") => jinja(rest, values, &mut left),
        Some(other) => {
            return Err(format!(
                "final_message: unknown template type '{other}' (jinja or basic)"
            ));
        }
    };
    Ok(Rendered { text, left })
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// `$name` and `${name}` (names of `[A-Za-z0-9_.]`), as cloud-init's `basic_render`.
fn basic(text: &str, values: &Values, left: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, written) = match after.strip_prefix('{') {
            Some(inner) => match inner.find('}') {
                Some(end) if end > 0 && inner[..end].chars().all(is_name_char) => {
                    (&inner[..end], &rest[at..at + end + 3])
                }
                _ => ("", "$"),
            },
            None => {
                let end = after.find(|c| !is_name_char(c)).unwrap_or(after.len());
                (&after[..end], &rest[at..=at + end])
            }
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        substitute(&mut out, values, name, written, left);
        rest = &rest[at + written.len()..];
    }
    out.push_str(rest);
    out
}

/// Appends the value of variable `name`, or, when there is none, the text as `written` (and
/// notes it in `left`).
fn substitute(
    out: &mut String,
    values: &Values,
    name: &str,
    written: &str,
    left: &mut Vec<String>,
) {
    match values.get(name) {
        Some(value) => out.push_str(value),
        None => {
            out.push_str(written);
            left.push(written.to_owned());
        }
    }
}

/// `{{ name }}` (spaces allowed); statements (`{% … %}`) and other expressions stay as written.
fn jinja(text: &str, values: &Values, left: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        let Some(end) = rest[at..].find("}}") else {
            out.push_str(&rest[at..]);
            rest = "";
            break;
        };
        let written = &rest[at..at + end + 2];
        let name = written[2..written.len() - 2].trim();
        substitute(&mut out, values, name, written, left);
        rest = &rest[at + written.len()..];
    }
    out.push_str(rest);
    if out.contains("{%") {
        left.push("{% … %} (jinja statements are not rendered)".to_owned());
    }
    out
}

/// Seconds since boot as cloud-init shows them (`/proc/uptime`'s first field), or `??`.
pub fn uptime(proc_uptime: Option<&[u8]>) -> Cow<'static, str> {
    proc_uptime
        .map(String::from_utf8_lossy)
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .map_or(Cow::Borrowed("??"), Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        Values {
            uptime: "12.34".into(),
            timestamp: "Thu, 03 Dec 2026 16:31:21 +0000".into(),
            version: "0.1.0".into(),
            datasource: "metadata-service".into(),
        }
    }

    fn rendered(message: &str) -> Rendered {
        render(message, &values()).unwrap()
    }

    #[test]
    fn the_default_is_cloud_inits_line() {
        assert_eq!(
            rendered("").text,
            "metaboot v. 0.1.0 finished at Thu, 03 Dec 2026 16:31:21 +0000. Datasource \
             metadata-service.  Up 12.34 seconds"
        );
        assert_eq!(rendered("  \n ").text, rendered("").text);
    }

    #[test]
    fn basic_variables_in_both_forms_and_both_cases() {
        // cloud-init's documentation example.
        let text = "cloud-init has finished\nversion: $version\ntimestamp: $timestamp\n\
                    datasource: $datasource\nuptime: $uptime";
        assert_eq!(
            rendered(text).text,
            "cloud-init has finished\nversion: 0.1.0\ntimestamp: Thu, 03 Dec 2026 16:31:21 \
             +0000\ndatasource: metadata-service\nuptime: 12.34"
        );
        let done = rendered("up ${UPTIME}s, $UPTIME, ${uptime}: $ alone, $$, ${}, cost $5");
        assert_eq!(
            done.text,
            "up 12.34s, 12.34, 12.34: $ alone, $$, ${}, cost $5"
        );
        assert_eq!(done.left, ["$5"]);
        let done = rendered("## template: basic\n${nope} and $version.");
        // `.` is a name character (cloud-init's dotted lookups), so `$version.` is unknown.
        assert_eq!(done.text, "${nope} and $version.");
        assert_eq!(done.left, ["${nope}", "$version."]);
    }

    #[test]
    fn jinja_expressions_are_rendered_and_statements_reported() {
        let done = rendered("## Template: JINJA\nUp {{ uptime }} s on {{datasource}} {{ x }}");
        assert_eq!(done.text, "Up 12.34 s on metadata-service {{ x }}");
        assert_eq!(done.left, ["{{ x }}"]);
        let done = rendered("## template: jinja\n{% if true %}up{% endif %} {{");
        assert_eq!(done.text, "{% if true %}up{% endif %} {{");
        assert_eq!(done.left.len(), 1);
        let err = render("## template: mako\nx", &values()).unwrap_err();
        assert_eq!(
            err,
            "final_message: unknown template type 'mako' (jinja or basic)"
        );
    }

    #[test]
    fn uptime_is_procs_first_field() {
        assert_eq!(uptime(Some(b"54.21 80.02\n")), "54.21");
        assert_eq!(uptime(None), "??");
        assert_eq!(uptime(Some(b"")), "??");
    }
}
