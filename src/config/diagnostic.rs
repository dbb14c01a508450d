//! Source-pointing config errors and their rustc-style rendering: `error:` line, `--> file:line:col`,
//! the offending line with a caret underneath, and an optional `= help:` line.

use std::fmt;
use std::ops::Range;

/// One problem in the config file, located by a byte range of the source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// A lowercase fragment, e.g. "unknown key `neds` in job `build`".
    pub message: String,
    /// Byte range into [`Diagnostics::source`]; may be empty (a point).
    pub span: Range<usize>,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, span: Range<usize>) -> Self {
        Diagnostic {
            message: message.into(),
            span,
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Every problem found in one file, with the text needed to render them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics {
    /// The path as shown to the user, e.g. `.pipeline.toml` or `../.pipeline.toml`.
    pub display_path: String,
    /// The file's text (decoded lossily if it was not UTF-8; spans index this text).
    pub source: String,
    /// Never empty, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Sorts by position so output is stable whatever order the checks ran in.
    pub fn new(display_path: &str, source: String, mut diagnostics: Vec<Diagnostic>) -> Self {
        diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
        Diagnostics {
            display_path: display_path.to_owned(),
            source,
            diagnostics,
        }
    }

    pub fn len(&self) -> usize {
        self.diagnostics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.diagnostics.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.diagnostics.iter()
    }

    /// 1-based line and column (in chars) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let at = Location::of(&self.source, offset);
        (at.line, at.col)
    }

    fn render_one(&self, f: &mut fmt::Formatter<'_>, d: &Diagnostic) -> fmt::Result {
        let at = Location::of(&self.source, d.span.start);
        let text = &self.source[at.line_start..at.line_end];
        let before = &text[..at.offset - at.line_start];
        // A span running past the end of its first line is underlined only up to that end; an
        // empty span (an error "at" a point) still gets one caret so the eye finds it.
        let end = d.span.end.clamp(at.offset, at.line_end);
        let carets = self.source[at.offset..end].chars().count().max(1);
        // Reproducing tabs keeps the caret aligned however the terminal expands them.
        let pad: String = before
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let w = at.line.to_string().len();

        writeln!(f, "error: {}", d.message)?;
        writeln!(
            f,
            "{:w$}--> {}:{}:{}",
            "", self.display_path, at.line, at.col
        )?;
        writeln!(f, "{:w$} |", "")?;
        writeln!(f, "{} | {}", at.line, text)?;
        write!(f, "{:w$} | {}{}", "", pad, "^".repeat(carets))?;
        if let Some(hint) = &d.hint {
            write!(f, "\n{:w$} = help: {}", "", hint)?;
        }
        Ok(())
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            self.render_one(f, d)?;
            f.write_str("\n\n")?;
        }
        let n = self.diagnostics.len();
        let noun = if n == 1 { "error" } else { "errors" };
        write!(f, "{n} {noun} in {}", self.display_path)
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Where a byte offset sits: its line (without the line terminator) and column.
struct Location {
    offset: usize,
    line: usize,
    col: usize,
    line_start: usize,
    line_end: usize,
}

impl Location {
    fn of(source: &str, offset: usize) -> Location {
        let mut offset = offset.min(source.len());
        // toml's spans are always on char boundaries, but a hand-made one might not be.
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[offset..]
            .find('\n')
            .map_or(source.len(), |i| offset + i);
        // A CRLF file would otherwise print a stray `\r` into the snippet.
        let line_end = if source[line_start..line_end].ends_with('\r') && offset < line_end {
            line_end - 1
        } else {
            line_end
        };
        Location {
            offset,
            line: source[..line_start].matches('\n').count() + 1,
            col: source[line_start..offset].chars().count() + 1,
            line_start,
            line_end: line_end.max(offset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, diagnostics: Vec<Diagnostic>) -> String {
        Diagnostics::new(".pipeline.toml", source.to_owned(), diagnostics).to_string()
    }

    #[test]
    fn renders_the_rustc_style_snippet() {
        let source = "[jobs.build]\nrun = \"make\"\nneds = [\"lint\"]\n";
        let start = source.find("neds").unwrap();
        let d = Diagnostic::new("unknown key `neds` in job `build`", start..start + 4)
            .with_hint("did you mean `needs`?");
        assert_eq!(
            render(source, vec![d]),
            "error: unknown key `neds` in job `build`\n \
             --> .pipeline.toml:3:1\n  \
             |\n\
             3 | neds = [\"lint\"]\n  \
             | ^^^^\n  \
             = help: did you mean `needs`?\n\
             \n\
             1 error in .pipeline.toml"
        );
    }

    #[test]
    fn gutter_grows_with_the_line_number() {
        let source = format!("{}x = 1\n", "\n".repeat(11));
        let start = source.find('x').unwrap();
        let out = render(&source, vec![Diagnostic::new("bad", start..start + 1)]);
        assert_eq!(
            out,
            "error: bad\n  --> .pipeline.toml:12:1\n   |\n12 | x = 1\n   | ^\n\n1 error in .pipeline.toml"
        );
    }

    #[test]
    fn column_counts_chars_not_bytes() {
        let source = "a = \"héllo\" x\n";
        let start = source.find('x').unwrap();
        let out = render(source, vec![Diagnostic::new("bad", start..start + 1)]);
        assert!(out.contains(".pipeline.toml:1:13\n"), "{out}");
        assert!(out.contains("  |             ^\n"), "{out}");
    }

    #[test]
    fn multi_line_span_underlines_only_the_first_line() {
        let source = "run = [\n  \"a\",\n]\n";
        let start = source.find('[').unwrap();
        let out = render(
            source,
            vec![Diagnostic::new("bad", start..source.len() - 1)],
        );
        assert!(out.contains("1 | run = [\n  |       ^\n"), "{out}");
    }

    #[test]
    fn empty_span_at_end_of_line_gets_one_caret() {
        let source = "run = 'x\n";
        let out = render(source, vec![Diagnostic::new("bad", 8..8)]);
        assert!(out.contains(".pipeline.toml:1:9\n"), "{out}");
        assert!(out.contains("1 | run = 'x\n  |         ^"), "{out}");
    }

    #[test]
    fn tabs_are_kept_in_the_caret_padding() {
        let source = "\tneds = 1\n";
        let out = render(source, vec![Diagnostic::new("bad", 1..5)]);
        assert!(out.contains("1 | \tneds = 1\n  | \t^^^^"), "{out}");
    }

    #[test]
    fn crlf_is_not_echoed() {
        let source = "a = 1\r\nneds = 1\r\n";
        let start = source.find("neds").unwrap();
        let out = render(source, vec![Diagnostic::new("bad", start..start + 4)]);
        assert!(out.contains("2 | neds = 1\n  | ^^^^"), "{out}");
    }

    #[test]
    fn all_diagnostics_render_in_source_order_with_a_count() {
        let source = "a = 1\nb = 2\n";
        let out = render(
            source,
            vec![
                Diagnostic::new("second", 6..7),
                Diagnostic::new("first", 0..1),
            ],
        );
        let first = out.find("error: first").unwrap();
        let second = out.find("error: second").unwrap();
        assert!(first < second, "{out}");
        assert!(out.ends_with("\n\n2 errors in .pipeline.toml"), "{out}");
    }
}
