//! A small, deterministic Markdown-to-roff converter for the subset the
//! docs use: `##`/`###` headings, paragraphs, `-` and `1.` lists, fenced
//! code, two-column tables, and inline `code`, **bold**, *emphasis* and
//! [links](target). Anything else is kept as text. Pure: `&str` in, roff out.

/// Escapes text for roff: backslashes, hyphens (as `\-`, so they copy and
/// search as ASCII), and every non-ASCII character as `\[uXXXX]` (groff
/// reads its input as Latin-1 unless preconv runs; the escape works either
/// way).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            c if c.is_ascii() => out.push(c),
            c => out.push_str(&format!("\\[u{:04X}]", u32::from(c))),
        }
    }
    out
}

/// One line of roff text: a leading `.` or `'` would be read as a request.
fn text_line(s: &str) -> String {
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s.to_string()
    }
}

/// Inline markup to font escapes; the rest escaped.
pub fn inline(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if let Some(r) = rest.strip_prefix('`') {
            if let Some(end) = r.find('`') {
                // \% : a path or key is not hyphenated.
                out += &format!("\\fB\\%{}\\fP", escape(&r[..end]));
                rest = &r[end + 1..];
                continue;
            }
        } else if let Some(r) = rest.strip_prefix("**") {
            if let Some(end) = r.find("**") {
                out += &format!("\\fB{}\\fP", inline(&r[..end]));
                rest = &r[end + 2..];
                continue;
            }
        } else if let Some(r) = rest.strip_prefix('*') {
            if let Some(end) = r.find('*').filter(|&e| e > 0 && !r.starts_with(' ')) {
                out += &format!("\\fI{}\\fP", inline(&r[..end]));
                rest = &r[end + 1..];
                continue;
            }
        } else if let Some(r) = rest.strip_prefix('[') {
            if let Some((text, after)) = r.split_once("](") {
                if let Some((target, tail)) = after.split_once(')') {
                    if !text.contains(']') {
                        out += &format!("{} ({})", inline(text), escape(target));
                        rest = tail;
                        continue;
                    }
                }
            }
        }
        out += &escape(&c.to_string());
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[derive(PartialEq)]
enum Block {
    None,
    Para,
    Item,
}

/// Converts Markdown blocks to man(7) requests. A `# ` title is dropped
/// (the page has its own); `##` becomes `.SH` (upper case), `###` `.SS`.
pub fn blocks(md: &str) -> String {
    let mut out = String::new();
    let mut cur = Block::None;
    let mut text = String::new();
    let mut in_code = false;
    let mut in_table = 0usize;
    let flush = |out: &mut String, text: &mut String, cur: &mut Block| {
        if *cur != Block::None {
            out.push_str(&text_line(&inline(text.trim())));
            out.push('\n');
        }
        text.clear();
        *cur = Block::None;
    };
    for line in md.lines() {
        if in_code {
            if line.trim_start().starts_with("```") {
                out += ".EE\n.RE\n";
                in_code = false;
            } else {
                out += &text_line(&escape(line));
                out.push('\n');
            }
            continue;
        }
        let t = line.trim();
        if !t.starts_with('|') {
            in_table = 0;
        }
        if t.starts_with("```") {
            flush(&mut out, &mut text, &mut cur);
            out += ".PP\n.RS 2\n.EX\n";
            in_code = true;
        } else if t.is_empty() || t.starts_with("# ") {
            flush(&mut out, &mut text, &mut cur);
        } else if let Some(h) = t.strip_prefix("## ") {
            flush(&mut out, &mut text, &mut cur);
            out += &format!(".SH \"{}\"\n", escape(&h.to_uppercase()));
        } else if let Some(h) = t.strip_prefix("### ") {
            flush(&mut out, &mut text, &mut cur);
            out += &format!(".SS \"{}\"\n", escape(h));
        } else if t.starts_with('|') {
            flush(&mut out, &mut text, &mut cur);
            in_table += 1;
            // The header and the |---| line are not entries.
            if in_table > 2 {
                let cells: Vec<&str> = t.trim_matches('|').split('|').map(str::trim).collect();
                out += &format!(".TP\n{}\n", text_line(&inline(cells[0])));
                out += &text_line(&inline(&cells[1..].join(" \u{2014} ")));
                out.push('\n');
            }
        } else if let Some(item) = t.strip_prefix("- ") {
            flush(&mut out, &mut text, &mut cur);
            out += ".IP \\(bu 2\n";
            text.push_str(item);
            cur = Block::Item;
        } else if let Some((n, item)) = numbered(t) {
            flush(&mut out, &mut text, &mut cur);
            out += &format!(".IP {n}. 4\n");
            text.push_str(item);
            cur = Block::Item;
        } else {
            if cur == Block::None {
                out += ".PP\n";
                cur = Block::Para;
            }
            text.push(' ');
            text.push_str(t);
        }
    }
    flush(&mut out, &mut text, &mut cur);
    out
}

fn numbered(t: &str) -> Option<(&str, &str)> {
    let (n, rest) = t.split_once(". ")?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some((n, rest))
}

/// The `## TITLE` section of `md`, without its heading: up to the next
/// `## ` heading.
pub fn section<'a>(md: &'a str, title: &str) -> Option<&'a str> {
    let head = format!("\n## {title}\n");
    let start = md.find(&head)? + head.len();
    let body = &md[start..];
    Some(body.find("\n## ").map_or(body, |end| &body[..end + 1]))
}

/// Everything before the first `## ` heading, without the `# ` title.
pub fn preamble(md: &str) -> &str {
    md.find("\n## ").map_or(md, |end| &md[..end + 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_markup() {
        for (md, roff) in [
            ("plain", "plain"),
            ("`a-b` and **bold**", "\\fB\\%a\\-b\\fP and \\fBbold\\fP"),
            ("*em* x * y", "\\fIem\\fP x * y"),
            ("see [boot](docs/boot.md).", "see boot (docs/boot.md)."),
            ("`[keyring]` table", "\\fB\\%[keyring]\\fP table"),
            ("a \\ b — c", "a \\e b \\[u2014] c"),
            ("`*.toml` files", "\\fB\\%*.toml\\fP files"),
        ] {
            assert_eq!(inline(md), roff, "{md:?}");
        }
    }

    #[test]
    fn block_structure() {
        let md = "# Title\n\nOne\nparagraph.\n\n## Files\n\n1. `/etc/x`;\n2. two\n   lines\n\n\
                  | key | why |\n|--|--|\n| `a` | because |\n\n### Sub\n\n- item\n\n```toml\n.x = 1\n```\n";
        let want = ".PP\nOne paragraph.\n.SH \"FILES\"\n.IP 1. 4\n\\fB\\%/etc/x\\fP;\n.IP 2. 4\ntwo lines\n\
                    .TP\n\\fB\\%a\\fP\nbecause\n.SS \"Sub\"\n.IP \\(bu 2\nitem\n.PP\n.RS 2\n.EX\n\\&.x = 1\n.EE\n.RE\n";
        assert_eq!(blocks(md), want);
    }

    #[test]
    fn sections() {
        let md = "# T\n\nintro\n\n## A\n\na\n\n## B\n\nb\n";
        assert_eq!(preamble(md), "# T\n\nintro\n\n");
        assert_eq!(section(md, "A"), Some("\na\n\n"));
        assert_eq!(section(md, "B"), Some("\nb\n"));
        assert_eq!(section(md, "C"), None);
    }
}
