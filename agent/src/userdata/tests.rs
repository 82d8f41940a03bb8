//! Tests of the user-data decoder: every content kind cloud-init accepts, and bad input.

use std::cell::RefCell;
use std::collections::BTreeMap;

use base64::Engine;
use serde_json::json;

use super::gzip::tests::gz;
use super::include::{Fetch, MAX_INCLUDE_DEPTH, MAX_INCLUDE_URLS, NoFetch};
use super::*;

/// Serves fixed URLs, counting requests.
#[derive(Default)]
struct FakeWeb {
    pages: BTreeMap<String, Vec<u8>>,
    hits: RefCell<Vec<String>>,
    limits: RefCell<Vec<u64>>,
}

impl Fetch for FakeWeb {
    fn fetch(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>, String> {
        self.hits.borrow_mut().push(url.to_owned());
        self.limits.borrow_mut().push(limit);
        Ok(self.pages.get(url).cloned())
    }
}

fn decode_str(text: &str) -> Decoded {
    decode(text.as_bytes(), None, &NoFetch)
}

const CONFIG: &str = "#cloud-config\nhostname: web\n";
const SCRIPT: &str = "#!/bin/sh\necho hello\n";

fn mime(parts: &[(&str, &str, Option<&str>)]) -> String {
    let mut msg =
        String::from("Content-Type: multipart/mixed; boundary=\"BOUNDARY\"\nMIME-Version: 1.0\n\n");
    for (ctype, body, encoding) in parts {
        msg.push_str(&format!("--BOUNDARY\nContent-Type: {ctype}\n"));
        if let Some(encoding) = encoding {
            msg.push_str(&format!("Content-Transfer-Encoding: {encoding}\n"));
        }
        msg.push_str(&format!("\n{body}\n"));
    }
    msg.push_str("--BOUNDARY--\n");
    msg
}

#[test]
fn cloud_config_plain_and_gzipped() {
    for data in [CONFIG.as_bytes().to_vec(), gz(CONFIG.as_bytes())] {
        let out = decode(&data, None, &NoFetch);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.configs.len(), 1);
        assert_eq!(out.configs[0]["hostname"], json!("web"));
    }
}

#[test]
fn script_plain_and_gzipped() {
    for data in [SCRIPT.as_bytes().to_vec(), gz(SCRIPT.as_bytes())] {
        let out = decode(&data, None, &NoFetch);
        assert!(out.errors.is_empty());
        assert_eq!(out.scripts.len(), 1);
        assert_eq!(out.scripts[0].body, SCRIPT.as_bytes());
        assert_eq!(out.scripts[0].name, "part-001");
    }
}

#[test]
fn mime_with_base64_script_config_and_gzip_part() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let gz_config = b64.encode(gz(b"#cloud-config\nfqdn: a.example.org\n"));
    let msg = mime(&[
        ("text/x-shellscript", &b64.encode(SCRIPT), Some("base64")),
        ("text/cloud-config", CONFIG, None),
        ("application/x-gzip", &gz_config, Some("base64")),
        (
            "text/x-shellscript-per-boot",
            "#!/bin/sh\necho boot\n",
            None,
        ),
        (
            "text/cloud-boothook",
            "#cloud-boothook\n#!/bin/sh\necho hook\n",
            None,
        ),
        (
            "text/plain",
            "#cloud-config\nmanage_etc_hosts: true\n",
            None,
        ),
    ]);
    let out = decode_str(&msg);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.scripts.len(), 1);
    assert_eq!(out.scripts[0].body, SCRIPT.as_bytes());
    assert_eq!(out.configs.len(), 3);
    assert_eq!(out.configs[1]["fqdn"], json!("a.example.org"));
    assert_eq!(out.configs[2]["manage_etc_hosts"], json!(true));
    assert_eq!(out.per(Frequency::Always).count(), 1);
    assert_eq!(out.boothooks[0].body, b"#!/bin/sh\necho hook\n");
}

#[test]
fn gzip_user_data_padded_with_zeros_is_read() {
    let mut data = gz(CONFIG.as_bytes());
    data.extend([0u8; 100]);
    let out = decode(&data, None, &NoFetch);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.configs[0]["hostname"], json!("web"));
}

#[test]
fn corrupt_gzip_is_an_error_and_yields_nothing() {
    let mut data = gz(CONFIG.as_bytes());
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    let out = decode(&data, None, &NoFetch);
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert!(
        out.errors[0].starts_with("user data: Corrupt gzip data"),
        "{:?}",
        out.errors
    );
    assert!(out.configs.is_empty() && out.scripts.is_empty());
}

#[test]
fn gzip_bomb_is_an_error() {
    let bomb = gz(&vec![b'#'; gzip::MAX_DECOMPRESSED_BYTES + 1]);
    let out = decode(&bomb, None, &NoFetch);
    assert_eq!(out.errors.len(), 1);
    assert!(
        out.errors[0].contains("decompresses to more than"),
        "{:?}",
        out.errors
    );
}

/// The bound is for every gzip part of a document together: parts that each stay under it
/// cannot add up to many times it in memory.
#[test]
fn gzip_parts_share_one_bound() {
    let half = base64::engine::general_purpose::STANDARD.encode(gz(&vec![
        b'#';
        gzip::MAX_DECOMPRESSED_BYTES
            / 2
            + 1
    ]));
    let parts: Vec<(&str, &str, Option<&str>)> = (0..3)
        .map(|_| ("application/gzip", half.as_str(), Some("base64")))
        .collect();
    let out = decode_str(&mime(&parts));
    assert_eq!(out.errors.len(), 2, "{:?}", out.errors);
    assert!(
        out.errors.iter().all(|e| e.contains("together")),
        "{:?}",
        out.errors
    );
}

/// Gzipped includes share the bound with the document that includes them: each under it
/// alone, together they stop at it.
#[test]
fn gzipped_includes_share_the_documents_bound() {
    let half = gz(&vec![b'#'; gzip::MAX_DECOMPRESSED_BYTES / 2 + 1]);
    let mut web = FakeWeb::default();
    for n in 0..3 {
        web.pages
            .insert(format!("http://198.18.0.9/{n}"), half.clone());
    }
    let doc = "#include\nhttp://198.18.0.9/0\nhttp://198.18.0.9/1\nhttp://198.18.0.9/2\n";
    let out = decode(doc.as_bytes(), None, &web);
    assert_eq!(out.errors.len(), 2, "{:?}", out.errors);
    assert!(
        out.errors.iter().all(|e| e.contains("together")),
        "{:?}",
        out.errors
    );
}

/// A document that makes an error (or a warning) of each of a great many parts lists the
/// first [`MAX_LISTED_MESSAGES`], then how many more there were.
#[test]
fn a_flood_of_errors_is_listed_to_a_bound_then_counted() {
    let many = MAX_LISTED_MESSAGES + 10;
    let items: Vec<String> = (0..many).map(|_| "- 1".to_owned()).collect();
    let out = decode_str(&format!("#cloud-config-archive\n{}\n", items.join("\n")));
    assert_eq!(
        out.warnings.len(),
        MAX_LISTED_MESSAGES + 1,
        "{:?}",
        out.warnings
    );
    assert_eq!(
        out.warnings.last().map(String::as_str),
        Some("10 more warnings like these")
    );
    let parts: Vec<(&str, &str, Option<&str>)> = (0..many)
        .map(|_| ("text/x-include-url", "ftp://nowhere/\n", None))
        .collect();
    let out = decode_str(&mime(&parts));
    assert!(
        out.errors.len() <= MAX_LISTED_MESSAGES + 1,
        "{}",
        out.errors.len()
    );
    assert!(
        out.errors
            .last()
            .is_some_and(|e| e.ends_with("more errors like these")),
        "{:?}",
        out.errors.last()
    );
}

/// A part declared `text/cloud-boothook` without the `#cloud-boothook` line keeps its first
/// line (its `#!`); with it, only that line goes.
#[test]
fn a_boothook_loses_only_its_marker_line() {
    let out = decode_str(&mime(&[
        ("text/cloud-boothook", "#!/bin/bash\necho declared\n", None),
        ("text/cloud-boothook", "echo first\necho second\n", None),
    ]));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.boothooks[0].body, b"#!/bin/bash\necho declared\n");
    assert_eq!(out.boothooks[1].body, b"echo first\necho second\n");
}

/// A boothook written on Windows, or with a blank line after the marker, still starts with its
/// interpreter line, as cloud-init writes it (`dos2unix`, the marker off, `lstrip`).
#[test]
fn a_boothooks_crlf_and_blank_lines_go() {
    for doc in [
        "#cloud-boothook\r\n#!/bin/bash\r\necho hi\r\n",
        "#cloud-boothook\n\n#!/bin/bash\necho hi\n",
        "#cloud-boothook #!/bin/bash\necho hi\n",
    ] {
        let out = decode_str(doc);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(
            String::from_utf8_lossy(&out.boothooks[0].body),
            "#!/bin/bash\necho hi\n",
            "{doc:?}"
        );
    }
}

/// A script typed on Windows (Horizon's user data box sends CRLF) runs, as under cloud-init:
/// its line ends become LF when its first line ends in CRLF (`util.dos2unix`), whatever its
/// kind; one whose first line ends in LF is written byte for byte, a lone CR kept.
#[test]
fn a_script_typed_on_windows_gets_unix_line_ends() {
    let msg = mime(&[
        ("text/x-shellscript", "#!/bin/bash\r\necho one\r\n", None),
        (
            "text/x-shellscript-per-boot",
            "#!/bin/sh\r\necho boot\r\n",
            None,
        ),
    ]);
    let out = decode_str(&msg);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.scripts[0].body, b"#!/bin/bash\necho one\n");
    assert_eq!(out.per_frequency[0].1.body, b"#!/bin/sh\necho boot\n");
    let out = decode_str("#!/bin/sh\r\nprintf 'a\\r\\n'\r\n");
    assert_eq!(out.scripts[0].body, b"#!/bin/sh\nprintf 'a\\r\\n'\n");
    // The first line decides: LF there, and the rest is the user's bytes.
    let kept = "#!/bin/sh\nprintf 'x\r\n'\n";
    assert_eq!(decode_str(kept).scripts[0].body, kept.as_bytes());
    assert_eq!(dos2unix(b"\n\r\n"), b"\n\r\n", "an empty first line");
    assert_eq!(dos2unix(b"a\rb\r\n"), b"a\rb\n", "a lone CR stays");
}

/// A part never takes a name of metaboot's own files beside the scripts (`runcmd`'s script,
/// the `vendor` directory), and a second document's parts (vendor_data2.json after
/// vendor_data.json) are named apart from the first's.
#[test]
fn parts_are_named_apart_from_metabots_files_and_each_other() {
    let named = |name: &str| {
        format!(
            "Content-Type: multipart/mixed; boundary=B\nMIME-Version: 1.0\n\n--B\n\
             Content-Type: text/x-shellscript\nContent-Disposition: attachment; \
             filename=\"{name}\"\n\n#!/bin/sh\necho {name}\n--B--\n"
        )
    };
    for name in RESERVED_NAMES {
        let out = decode_str(&named(name));
        assert_eq!(out.scripts[0].name, format!("{name}.1"));
    }
    let mut vendor = decode_str("#!/bin/sh\necho one\n");
    vendor.extend(decode_str("#!/bin/sh\necho two\n"));
    vendor.extend(decode_str("#cloud-boothook\necho hook\n"));
    vendor.extend(decode_str("#cloud-boothook\necho hook2\n"));
    let names = |list: &[Script]| list.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&vendor.scripts), ["part-001", "part-001.1"]);
    assert_eq!(names(&vendor.boothooks), ["part-001", "part-001.1"]);
}

/// An archive's items are leaves, as cloud-init's `_explode_archive` attaches them: each is
/// applied by its type as given (or its first line), never opened again; an include, a nested
/// archive or a gzip item is a warning naming its type, and a MIME-looking string is no MIME.
#[test]
fn an_archives_items_are_leaves_as_in_cloud_init() {
    let mut web = FakeWeb::default();
    web.pages.insert("http://10.0.0.1/a".into(), CONFIG.into());
    let nested =
        serde_json::to_string("#cloud-config-archive\n- \"#!/bin/sh\\necho nested\"\n").unwrap();
    let mime_text = serde_json::to_string(&mime(&[(
        "text/x-shellscript",
        "#!/bin/sh\necho mime",
        None,
    )]))
    .unwrap();
    let gz = base64::engine::general_purpose::STANDARD.encode(gz(b"#!/bin/sh\necho gz\n"));
    let archive = format!(
        "#cloud-config-archive\n\
         - \"#include\\nhttp://10.0.0.1/a\\n\"\n\
         - {{type: text/x-include-url, content: \"http://10.0.0.1/a\\n\"}}\n\
         - {nested}\n\
         - {{type: application/x-gzip, content: {gz}}}\n\
         - {mime_text}\n\
         - {{type: text/x-shellscript, content: \"#cloud-config\\nhostname: script\\n\"}}\n\
         - \"#!/bin/sh\\necho kept\\n\"\n\
         - {{content: \"hostname: leaf\"}}\n"
    );
    let out = decode(archive.as_bytes(), None, &web);
    assert!(web.hits.borrow().is_empty(), "{:?}", web.hits.borrow());
    let bodies: Vec<String> = out
        .scripts
        .iter()
        .map(|s| String::from_utf8_lossy(&s.body).into_owned())
        .collect();
    assert_eq!(
        bodies,
        [
            "#cloud-config\nhostname: script\n",
            "#!/bin/sh\necho kept\n"
        ],
        "{out:?}"
    );
    assert_eq!(out.configs.len(), 1, "{out:?}");
    assert_eq!(out.configs[0]["hostname"], json!("leaf"));
    let ignored: Vec<&str> = out
        .warnings
        .iter()
        .filter_map(|w| w.split(" archive item of type ").nth(1))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    assert_eq!(
        ignored,
        [
            "text/x-include-url",
            "text/x-include-url",
            "text/cloud-config-archive",
            "application/x-gzip"
        ],
        "{:?}",
        out.warnings
    );
    assert!(
        out.warnings[0].contains("give it as user data or a MIME part of its own"),
        "{:?}",
        out.warnings
    );
    // The MIME-looking string is a cloud-config (no marker on its first line), and not YAML.
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert!(
        out.errors[0].contains("cloud-config: Invalid YAML"),
        "{:?}",
        out.errors
    );
}

/// A vendor-data list's items are documents, each processed whole as cloud-init's
/// `UserDataProcessor.process` processes a list: an include is fetched, an archive expanded,
/// a MIME string split.
#[test]
fn vendor_data_list_items_are_documents() {
    let mut web = FakeWeb::default();
    web.pages.insert("http://10.0.0.1/v".into(), CONFIG.into());
    let doc = json!({"cloud-init": [
        "#include\nhttp://10.0.0.1/v\n",
        "#cloud-config-archive\n- \"#!/bin/sh\\necho arch\\n\"\n",
        mime(&[("text/x-shellscript", "#!/bin/sh\necho mime", None)]),
    ]});
    let out = decode_vendor(doc.to_string().as_bytes(), "vendor_data.json", &web);
    assert!(out.errors.is_empty() && out.warnings.is_empty(), "{out:?}");
    assert_eq!(web.hits.borrow().as_slice(), ["http://10.0.0.1/v"]);
    assert_eq!(out.configs.len(), 1);
    assert_eq!(out.configs[0]["hostname"], json!("web"));
    let bodies: Vec<String> = out
        .scripts
        .iter()
        .map(|s| String::from_utf8_lossy(&s.body).into_owned())
        .collect();
    assert_eq!(bodies, ["#!/bin/sh\necho arch\n", "#!/bin/sh\necho mime"]);
}

#[test]
fn mime_without_boundary_is_an_error() {
    let out = decode_str("Content-Type: multipart/mixed\nMIME-Version: 1.0\n\n--x\n\nhi\n--x--\n");
    assert_eq!(out.errors.len(), 1);
    assert!(out.errors[0].contains("no boundary"), "{:?}", out.errors);
}

#[test]
fn malformed_yaml_in_one_part_keeps_the_others() {
    let msg = mime(&[
        (
            "text/cloud-config",
            "#cloud-config\nruncmd: [echo, 'x'\n",
            None,
        ),
        ("text/cloud-config", CONFIG, None),
        ("text/x-shellscript", SCRIPT, None),
    ]);
    let out = decode_str(&msg);
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert!(out.errors[0].contains("Invalid YAML"), "{}", out.errors[0]);
    assert_eq!(out.configs.len(), 1);
    assert_eq!(out.scripts.len(), 1);
}

#[test]
fn unknown_content_is_a_warning_not_an_error() {
    let out = decode_str("just some text\n");
    assert!(out.errors.is_empty());
    assert_eq!(out.warnings.len(), 1);
    let out = decode_str(&mime(&[("application/octet-stream", "xx", None)]));
    assert!(out.errors.is_empty());
    assert!(out.warnings[0].contains("unsupported part type"));
}

#[test]
fn includes_are_followed_and_bounded() {
    let mut web = FakeWeb::default();
    web.pages.insert("http://10.0.0.1/a".into(), CONFIG.into());
    web.pages
        .insert("http://10.0.0.1/b".into(), gz(SCRIPT.as_bytes()));
    let out = decode(
        b"#include\nhttp://10.0.0.1/a\nhttp://10.0.0.1/b\nhttp://10.0.0.1/404\n",
        None,
        &web,
    );
    assert_eq!(out.configs.len(), 1);
    assert_eq!(out.scripts.len(), 1);
    assert_eq!(out.errors.len(), 1);
    assert!(out.errors[0].contains("not found (404)"));
    // Every include is fetched with the include size bound (the HTTP client enforces it).
    assert!(
        web.limits
            .borrow()
            .iter()
            .all(|&l| l == super::include::MAX_INCLUDE_BYTES)
    );

    // An include that includes itself stops at the depth bound.
    let mut web = FakeWeb::default();
    web.pages.insert(
        "http://10.0.0.1/loop".into(),
        b"#include\nhttp://10.0.0.1/loop\n".to_vec(),
    );
    let out = decode(b"#include\nhttp://10.0.0.1/loop\n", None, &web);
    assert_eq!(web.hits.borrow().len(), MAX_INCLUDE_DEPTH);
    assert!(out.errors[0].contains("levels deep"), "{:?}", out.errors);

    // Too many URLs.
    let web = FakeWeb::default();
    let list: String = (0..MAX_INCLUDE_URLS + 3)
        .map(|i| format!("http://10.0.0.1/{i}\n"))
        .collect();
    let out = decode(format!("#include\n{list}").as_bytes(), None, &web);
    assert_eq!(web.hits.borrow().len(), MAX_INCLUDE_URLS);
    assert!(out.errors.last().unwrap().contains("include URLs"));
}

#[test]
fn cloud_config_archive_expands_to_parts() {
    let archive = "#cloud-config-archive\n- type: text/cloud-config\n  content: |\n    hostname: arch\n\
                   - content: |\n    #!/bin/sh\n    echo archived\n  filename: arch.sh\n";
    let out = decode_str(archive);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.configs[0]["hostname"], json!("arch"));
    assert_eq!(out.scripts[0].name, "arch.sh");
}

/// An archive item's `!!binary` content is the decoded bytes, as PyYAML hands them to
/// cloud-init: a base64 script is run as the script, never as its base64 text; content that is
/// a mapping (a `content:` without its `|`) is a warning, not an empty cloud-config.
#[test]
fn an_archive_items_binary_content_is_decoded() {
    let script = base64::engine::general_purpose::STANDARD.encode("#!/bin/sh\necho hi\n");
    let out = decode_str(&format!(
        "#cloud-config-archive\n- content: !!binary {script}\n- type: text/x-shellscript\n  \
         content: !!binary |\n    {script}\n- !!binary {script}\n"
    ));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert!(out.configs.is_empty(), "{:?}", out.configs);
    assert_eq!(out.scripts.len(), 3);
    for script in &out.scripts {
        assert_eq!(script.body, b"#!/bin/sh\necho hi\n");
    }
    // Binary content that is not text (gzip bytes): that item is a warning, and the other
    // items apply, their `!!binary` content decoded.
    let gz = base64::engine::general_purpose::STANDARD.encode(gz(b"#!/bin/sh\necho z\n"));
    let out = decode_str(&format!(
        "#cloud-config-archive\n- type: application/x-gzip\n  content: !!binary {gz}\n\
         - content: \"#!/bin/sh\\necho y\\n\"\n- content: !!binary {script}\n"
    ));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let bodies: Vec<&[u8]> = out.scripts.iter().map(|s| s.body.as_slice()).collect();
    assert_eq!(
        bodies,
        [&b"#!/bin/sh\necho y\n"[..], b"#!/bin/sh\necho hi\n"],
        "{:?}",
        out.warnings
    );
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert!(
        out.warnings[0].contains("item 1: its `!!binary` content is not UTF-8 text"),
        "{:?}",
        out.warnings
    );
    let out = decode_str("#cloud-config-archive\n- content:\n    hostname: x\n");
    assert!(out.configs.is_empty(), "{:?}", out.configs);
    assert!(
        out.warnings[0].contains("content is a mapping, not text"),
        "{:?}",
        out.warnings
    );
}

/// An archive's item without a type is cloud-config unless its first line says otherwise, as
/// cloud-init's `ARCHIVE_UNDEF_TYPE` makes it.
#[test]
fn an_archive_item_without_a_type_is_cloud_config() {
    let archive = "#cloud-config-archive\n- content: \"runcmd: [[touch, /a]]\"\n- \"hostname: plain\"\n\
                   - \"#!/bin/sh\\necho typed\"\n";
    let out = decode_str(archive);
    assert!(out.errors.is_empty() && out.warnings.is_empty(), "{out:?}");
    assert_eq!(out.configs.len(), 2);
    assert_eq!(out.configs[0]["runcmd"], json!([["touch", "/a"]]));
    assert_eq!(out.configs[1]["hostname"], json!("plain"));
    assert_eq!(out.scripts.len(), 1);
}

#[test]
fn the_part_count_is_bounded() {
    let archive: String = std::iter::once("#cloud-config-archive\n".to_owned())
        .chain((0..MAX_PARTS + 5).map(|i| format!("- \"#!/bin/sh\\necho {i}\"\n")))
        .collect();
    let out = decode_str(&archive);
    // The archive itself is part 1.
    assert_eq!(out.scripts.len(), MAX_PARTS - 1);
    assert_eq!(out.errors.len(), 1);
}

#[test]
fn duplicate_script_names_are_made_unique() {
    let msg = "Content-Type: multipart/mixed; boundary=b\nMIME-Version: 1.0\n\n\
--b\nContent-Type: text/x-shellscript\nContent-Disposition: attachment; filename=\"s.sh\"\n\n#!/bin/sh\n\
--b\nContent-Type: text/x-shellscript\nContent-Disposition: attachment; filename=\"s.sh\"\n\n#!/bin/sh\n--b--\n";
    let names: Vec<String> = decode_str(msg)
        .scripts
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["s.sh", "s.sh.1"]);
}

#[test]
fn empty_vendor_data_is_none_as_in_cloud_init() {
    for doc in [
        r#"{"cloud-init": ""}"#,
        r#"{"cloud-init": {}}"#,
        r#"{"cloud-init": []}"#,
        r#"{"cloud-init": null}"#,
        r#"{"cloud-init": false}"#,
        r#"{"cloud-init": 0}"#,
        r#"{"cloud-init": 0.0}"#,
        "{}",
        "[]",
        r#""""#,
        "null",
        "false",
        "0",
    ] {
        let out = decode_vendor(doc.as_bytes(), "vendor_data.json", &NoFetch);
        assert!(
            out.errors.is_empty() && out.warnings.is_empty(),
            "{doc}: {out:?}"
        );
        assert_eq!((out.configs.len(), out.script_count()), (0, 0), "{doc}");
    }
    // What is not empty and not text or a list is still an error, as cloud-init's ValueError.
    for doc in [
        r#"{"cloud-init": true}"#,
        r#"{"cloud-init": 1}"#,
        "true",
        "5",
    ] {
        let out = decode_vendor(doc.as_bytes(), "vendor_data.json", &NoFetch);
        assert_eq!(out.errors.len(), 1, "{doc}: {out:?}");
    }
}

#[test]
fn parts_of_disabled_types_are_left_out() {
    let doc = mime(&[
        ("text/cloud-config", CONFIG, None),
        ("text/x-shellscript", SCRIPT, None),
        ("text/x-shellscript-per-boot", SCRIPT, None),
        ("text/x-shellscript-per-once", SCRIPT, None),
        ("text/cloud-boothook", "#cloud-boothook\necho hook\n", None),
    ]);
    let mut out = decode_str(&doc);
    assert_eq!((out.configs.len(), out.script_count()), (1, 4));
    out.without_types(&[
        "text/x-shellscript".into(),
        "text/x-shellscript-per-boot".into(),
    ]);
    assert_eq!((out.configs.len(), out.scripts.len()), (1, 0));
    assert_eq!(out.per(Frequency::Once).count(), 1);
    assert_eq!(out.per(Frequency::Always).count(), 0);
    out.without_types(&["text/cloud-config".into(), "text/cloud-boothook".into()]);
    assert_eq!((out.configs.len(), out.script_count()), (0, 1));
}

#[test]
fn vendor_data_cloud_init_key() {
    let doc = json!({"cloud-init": "#cloud-config\nruncmd: [vendor]\n", "other": 1}).to_string();
    let out = decode_vendor(doc.as_bytes(), "vendor_data.json", &NoFetch);
    assert_eq!(out.configs[0]["runcmd"], json!(["vendor"]));

    let doc = json!({"cloud-init": ["#cloud-config\na: 1\n", {"type": "text/x-shellscript", "content": "#!/bin/sh\n"}]});
    let out = decode_vendor(doc.to_string().as_bytes(), "vendor_data.json", &NoFetch);
    assert_eq!((out.configs.len(), out.scripts.len()), (1, 1));

    let out = decode_vendor(b"{}", "vendor_data2.json", &NoFetch);
    assert!(out.errors.is_empty() && out.configs.is_empty());

    let out = decode_vendor(br#"{"cloud-init": {"a": 1}}"#, "vendor_data.json", &NoFetch);
    assert!(out.errors[0].contains("must be a string or a list"));

    let out = decode_vendor(b"{not json", "vendor_data.json", &NoFetch);
    assert!(out.errors[0].starts_with("vendor_data.json: not valid JSON"));

    let out = decode_vendor(
        br##""#cloud-config\nb: 2\n""##,
        "vendor_data.json",
        &NoFetch,
    );
    assert_eq!(out.configs[0]["b"], json!(2));
}

/// A part cloud-init would apply and metaboot cannot is an error naming it (status `error`);
/// the other parts are still applied.
#[test]
fn a_part_metaboot_cannot_apply_is_an_error() {
    let out = decode_str(&mime(&[
        (
            "text/jinja2",
            "## template: jinja\n#cloud-config\nhostname: {{ v1.name }}\n",
            None,
        ),
        ("text/cloud-config", "#cloud-config\nhostname: kept\n", None),
    ]));
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert!(
        out.errors[0].contains("text/jinja2 parts are not supported"),
        "{:?}",
        out.errors
    );
    assert_eq!(out.configs[0]["hostname"], json!("kept"));
}

/// A part's `Merge-Type` header and `merge_how` key are read (and checked) with it, as
/// cloud-init's part handler reads them; one it cannot read leaves that part alone out.
#[test]
fn merge_types_come_from_the_header_or_the_part() {
    let msg = "Content-Type: multipart/mixed; boundary=b\nMIME-Version: 1.0\n\n\
--b\nContent-Type: text/cloud-config\n\nruncmd: [a]\n\
--b\nContent-Type: text/cloud-config\nMerge-Type: list(append)+dict(no_replace,recurse_list)+str()\n\nruncmd: [b]\n\
--b\nContent-Type: text/cloud-config\n\nmerge_how: 'dict(oops'\nruncmd: [c]\n--b--\n";
    let out = decode_str(msg);
    assert_eq!(out.configs.len(), 2, "{:?}", out.configs);
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert!(
        out.errors[0].contains("this part was not merged"),
        "{:?}",
        out.errors
    );
    assert_eq!(
        Value::Object(super::merge::parts(&out.configs)),
        json!({"runcmd": ["a", "b"]})
    );
}

/// A multi-create request's user data, parts marked with `Launch-Index` (the MIME header, an
/// archive item's `launch-index`, a cloud-config's own `launch-index` key): each instance keeps
/// the unmarked parts and those marked with its own index, as cloud-init's launch index filter
/// does; without a launch index every part is kept.
#[test]
fn parts_marked_for_another_launch_index_are_left_out() {
    let msg = mime(&[
        (
            "text/x-shellscript\nLaunch-Index: 0",
            "#!/bin/sh\necho zero\n",
            None,
        ),
        (
            "text/x-shellscript\nLaunch-Index: 1",
            "#!/bin/sh\necho one\n",
            None,
        ),
        (
            "text/x-shellscript\nLaunch-Index: one",
            "#!/bin/sh\necho bad\n",
            None,
        ),
        ("text/x-shellscript", "#!/bin/sh\necho all\n", None),
        (
            "text/cloud-config",
            "#cloud-config\nlaunch-index: 1\nhostname: one\n",
            None,
        ),
        (
            "text/cloud-config\nLaunch-Index: 0",
            "#cloud-config\nlaunch-index: 1\nhostname: header-wins\n",
            None,
        ),
        (
            "text/cloud-config-archive",
            "- {type: text/x-shellscript, launch-index: 1, content: \"#!/bin/sh\\necho arch1\\n\"}\n\
             - {type: text/x-shellscript, launch-index: \"0\", content: \"#!/bin/sh\\necho arch0\\n\"}\n",
            None,
        ),
    ]);
    let bodies = |out: &Decoded| -> Vec<String> {
        out.scripts
            .iter()
            .map(|s| {
                String::from_utf8_lossy(&s.body)
                    .lines()
                    .last()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let hostnames = |out: &Decoded| -> Vec<String> {
        out.configs
            .iter()
            .map(|c| c["hostname"].as_str().unwrap().to_owned())
            .collect()
    };
    let one = decode(msg.as_bytes(), Some(1), &NoFetch);
    assert_eq!(bodies(&one), ["echo one", "echo all", "echo arch1"]);
    assert_eq!(hostnames(&one), ["one"]);
    let zero = decode(msg.as_bytes(), Some(0), &NoFetch);
    assert_eq!(bodies(&zero), ["echo zero", "echo all", "echo arch0"]);
    assert_eq!(hostnames(&zero), ["header-wins"]);
    let every = decode(msg.as_bytes(), None, &NoFetch);
    assert_eq!(every.scripts.len(), 6);
    assert_eq!(every.configs.len(), 2);
    for out in [&one, &zero, &every] {
        assert!(out.errors.is_empty() && out.warnings.is_empty(), "{out:?}");
    }
}

/// A cloud-config part of a few KiB whose aliases expand to `mib` MiB (and a bit) of scalars.
fn alias_bomb(hostname: &str, mib: usize) -> String {
    let kib = format!("\"{}\"", "x".repeat(1024));
    let times = |alias: &str, n: usize| vec![alias; n].join(", ");
    format!(
        "#cloud-config\nhostname: {hostname}\nbomb:\n  a: &a {kib}\n  b: &b [{}]\n  \
         c: &c [{}]\n  d: [{}]\n",
        times("*a", 32),
        times("*b", 32),
        times("*c", mib)
    )
}

#[test]
fn yaml_parts_share_one_expansion_bound() {
    // Each part is far under the parser's own bound (one part may expand to 64 MiB), but the
    // parts together pass it: the first ones apply, the ones past it are errors of their own.
    let part = 24;
    assert!(3 * part * 1024 * 1024 > yaml::MAX_YAML_SCALAR_BYTES);
    let bombs: Vec<String> = (1..=4)
        .map(|n| alias_bomb(&format!("part{n}"), part))
        .collect();
    assert!(bombs[0].len() < 4096, "{}", bombs[0].len());
    let out = first_two_of_four_parts_apply(&bombs);
    for (error, name) in out.errors.iter().zip(["part-003", "part-004"]) {
        assert!(
            error.starts_with(&format!(
                "{name}: cloud-config: user data's YAML expands past {} bytes (aliases repeat",
                yaml::MAX_YAML_SCALAR_BYTES
            )),
            "{error}"
        );
    }
}

/// Decodes `bombs` (four cloud-config parts setting `hostname: partN`, whose aliases together
/// pass one of the whole user data's YAML bounds after the second) as one MIME user data:
/// the first two apply, the last two are errors of their own, in the project's words, not
/// the parser's.
fn first_two_of_four_parts_apply(bombs: &[String]) -> Decoded {
    let parts: Vec<(&str, &str, Option<&str>)> = bombs
        .iter()
        .map(|bomb| ("text/cloud-config", bomb.as_str(), None))
        .collect();
    let out = decode_str(&mime(&parts));
    let hostnames: Vec<&Value> = out.configs.iter().map(|c| &c["hostname"]).collect();
    assert_eq!(hostnames, [&json!("part1"), &json!("part2")]);
    assert_eq!(out.errors.len(), 2, "{:?}", out.errors);
    for error in &out.errors {
        assert!(!error.contains("budget breached"), "{error}");
    }
    out
}

/// A cloud-config part of under 300 bytes whose aliases of an empty string expand to about
/// `copies` × 11,111 values (and 12,355 more): five anchored layers, each ten aliases of the
/// one before, then `copies` aliases of the last. Its scalars come to a few bytes.
fn empty_alias_layers(hostname: &str, copies: usize) -> String {
    let ten = |alias: &str| [alias; 10].join(", ");
    format!(
        "#cloud-config\nhostname: {hostname}\nbomb:\n  a: &a \"\"\n  b: &b [{}]\n  c: &c [{}]\n  \
         d: &d [{}]\n  e: &e [{}]\n  f: [{}]\n",
        ten("*a"),
        ten("*b"),
        ten("*c"),
        ten("*d"),
        vec!["*e"; copies].join(", ")
    )
}

#[test]
fn yaml_parts_share_one_node_bound() {
    // Each part has about 100,000 values, under the parser's own bound for one parse (250,000),
    // and almost no scalar bytes; together they pass the whole user data's bound: the first
    // ones apply, the ones past it are errors of their own.
    let bombs: Vec<String> = (1..=4)
        .map(|n| empty_alias_layers(&format!("part{n}"), 8))
        .collect();
    assert!(bombs[0].len() < 300, "{}", bombs[0].len());
    let nodes = 12_355 + 1 + 8 * 11_111;
    assert!(nodes < serde_saphyr::Budget::default().max_nodes);
    assert!(2 * nodes < yaml::MAX_YAML_NODES && 3 * nodes > yaml::MAX_YAML_NODES);
    let out = first_two_of_four_parts_apply(&bombs);
    for (error, name) in out.errors.iter().zip(["part-003", "part-004"]) {
        assert!(
            error.starts_with(&format!(
                "{name}: cloud-config: user data's YAML has more than {} values (",
                yaml::MAX_YAML_NODES
            )),
            "{error}"
        );
        assert!(error.contains("repeat less through aliases"), "{error}");
    }
}
