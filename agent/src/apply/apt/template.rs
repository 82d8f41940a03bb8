//! The variables of an apt source line or a `sources_list` template filled in as cloud-init's
//! `templater.render_string` fills them: `$NAME` and `${NAME}` (its basic renderer), or, when
//! the first line says `## template:jinja`, `{{ NAME }}` (that line dropped). Only variables:
//! a jinja statement (`{% … %}`) is refused, and so is a variable the parameters lack
//! (cloud-init fails the module on a basic template's unknown name).

use std::collections::BTreeMap;

/// A template that cannot be filled in; nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown variable {0:?}: the known ones are {1}")]
    Unknown(String, String),
    #[error(
        "jinja statements ({{% … %}}) are not supported: metaboot fills in {{{{ variables }}}} only"
    )]
    Statement,
    #[error("unknown template type {0:?}: want `## template:jinja` or `## template:basic`")]
    Type(String),
    #[error("an unclosed {{{{ at {0:?}")]
    Unclosed(String),
}

/// The values a template may use, by name.
pub type Params = BTreeMap<String, String>;

/// `text` with its variables replaced by `params`.
pub fn render(text: &str, params: &Params) -> Result<String, TemplateError> {
    render_with(text, &mut |name| lookup(name, params).map(str::to_owned))
}

/// The names of the variables `text` uses, in order (those before a fault, for a template
/// that cannot be filled in).
pub fn variables(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let _ = render_with(text, &mut |name| {
        names.push(name.to_owned());
        Ok(String::new())
    });
    names
}

/// A variable's value, by name.
type Lookup<'a> = dyn FnMut(&str) -> Result<String, TemplateError> + 'a;

fn render_with(text: &str, value: &mut Lookup<'_>) -> Result<String, TemplateError> {
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    match template_type(first) {
        None => basic(text, value),
        Some(kind) if kind.eq_ignore_ascii_case("basic") => basic(rest, value),
        Some(kind) if kind.eq_ignore_ascii_case("jinja") => jinja(rest, value),
        Some(kind) => Err(TemplateError::Type(kind.to_owned())),
    }
}

/// The type a first line `## template:TYPE` names (cloud-init's `##\s*template:(.*)`).
fn template_type(line: &str) -> Option<&str> {
    let after = line.strip_prefix("##")?.trim_start();
    let prefix = after.get(..9)?;
    prefix
        .eq_ignore_ascii_case("template:")
        .then(|| after[9..].trim())
}

fn lookup<'a>(name: &str, params: &'a Params) -> Result<&'a str, TemplateError> {
    params.get(name).map(String::as_str).ok_or_else(|| {
        let known: Vec<&str> = params.keys().map(String::as_str).collect();
        TemplateError::Unknown(name.to_owned(), known.join(", "))
    })
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// cloud-init's basic renderer: `${NAME}` or `$NAME` (letters, digits, `_`, `.`).
fn basic(text: &str, value: &mut Lookup<'_>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let braced = after.strip_prefix('{').and_then(|inner| {
            let end = inner.find('}')?;
            let name = &inner[..end];
            (!name.is_empty() && name.chars().all(is_name_char)).then_some((name, end + 2))
        });
        let (name, used) = match braced {
            Some(found) => found,
            None => {
                let len = after.find(|c| !is_name_char(c)).unwrap_or(after.len());
                (&after[..len], len)
            }
        };
        if name.is_empty() {
            out.push('$');
        } else {
            out.push_str(&value(name)?);
        }
        rest = &after[used..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `{{ NAME }}` replaced; statements and comments refused.
fn jinja(text: &str, value: &mut Lookup<'_>) -> Result<String, TemplateError> {
    if text.contains("{%") || text.contains("{#") {
        return Err(TemplateError::Statement);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| TemplateError::Unclosed(after.chars().take(20).collect()))?;
        out.push_str(&value(after[..end].trim())?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        [
            ("MIRROR", "http://deb.example/debian"),
            ("RELEASE", "bookworm"),
            ("codename", "bookworm"),
            ("KEY_FILE", "/etc/apt/cloud-init.gpg.d/x.gpg"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn basic_variables_with_and_without_braces() {
        assert_eq!(
            render(
                "deb [signed-by=$KEY_FILE] $MIRROR ${RELEASE}-updates main $",
                &params()
            )
            .unwrap(),
            "deb [signed-by=/etc/apt/cloud-init.gpg.d/x.gpg] http://deb.example/debian \
             bookworm-updates main $"
        );
        // A name ends at a character that cannot be in one (`-`, `/`).
        assert_eq!(
            render("$RELEASE-security $MIRROR/", &params()).unwrap(),
            "bookworm-security http://deb.example/debian/"
        );
        assert_eq!(
            render("no variables\n", &params()).unwrap(),
            "no variables\n"
        );
    }

    #[test]
    fn jinja_variables_after_the_type_line() {
        let text = "## template:jinja\ndeb {{mirror_x}} {{ codename }} main\n";
        let mut params = params();
        params.insert("mirror_x".into(), "http://m".into());
        assert_eq!(
            render(text, &params).unwrap(),
            "deb http://m bookworm main\n"
        );
        // The basic type line is dropped too; its `{{` is text.
        assert_eq!(
            render("## Template: basic\n{{ $RELEASE }}", &params).unwrap(),
            "{{ bookworm }}"
        );
    }

    #[test]
    fn what_cannot_be_filled_in_is_an_error() {
        let err = render("deb $MIRRORS main", &params()).unwrap_err();
        assert_eq!(
            err.to_string().split(':').next(),
            Some("unknown variable \"MIRRORS\"")
        );
        assert!(err.to_string().contains("MIRROR, RELEASE"), "{err}");
        assert_eq!(
            render("## template:jinja\n{% if x %}a{% endif %}", &params()),
            Err(TemplateError::Statement)
        );
        assert_eq!(
            render("## template:jinja\n{{ codename", &params()),
            Err(TemplateError::Unclosed(" codename".into()))
        );
        assert_eq!(
            render("## template:mako\nx", &params()),
            Err(TemplateError::Type("mako".into()))
        );
        assert!(matches!(
            render("## template:jinja\n{{ nope }}", &params()),
            Err(TemplateError::Unknown(..))
        ));
    }
}
