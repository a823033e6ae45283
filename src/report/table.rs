//! One table, written once and rendered twice: as Markdown (a pipe table, as GitHub renders it)
//! and as HTML. Every table of the reports is a [`Table`], so the two renderings of one table
//! cannot drift apart.
//!
//! Cells are plain text. The Markdown rendering writes them as they are (a report may put a
//! code span or an emphasis in a cell meant for Markdown only); the HTML rendering escapes
//! `&`, `<` and `>`.

/// How a column's cells line up: text to the left, numbers to the right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table: a header per column, its alignment, and rows of cells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table of the given columns, each a header and its alignment.
    pub fn new<S: Into<String>>(columns: impl IntoIterator<Item = (S, Align)>) -> Table {
        let (headers, align) = columns.into_iter().map(|(h, a)| (h.into(), a)).unzip();
        Table {
            headers,
            align,
            rows: Vec::new(),
        }
    }

    /// A table whose columns all line up to the left.
    pub fn left<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Table {
        Table::new(headers.into_iter().map(|h| (h, Align::Left)))
    }

    /// Adds a row; panics unless it has one cell per column.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let cells: Vec<String> = cells.into_iter().map(Into::into).collect();
        assert_eq!(
            cells.len(),
            self.headers.len(),
            "a row of {} cells in a table of {} columns: {cells:?}",
            cells.len(),
            self.headers.len()
        );
        self.rows.push(cells);
    }

    /// The number of rows (the header not counted).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The pipe table, every line ended by a newline: the header line, the alignment line
    /// (`---` left, `---:` right), then one line per row, each cell written ` cell |`. An empty
    /// header is written `| |` and an empty cell `|  |`, as the reports have always been written.
    pub fn markdown(&self) -> String {
        let mut s = String::from("|");
        for h in &self.headers {
            if h.is_empty() {
                s.push_str(" |");
            } else {
                s.push_str(&format!(" {h} |"));
            }
        }
        s.push_str("\n|");
        for a in &self.align {
            s.push_str(match a {
                Align::Left => "---|",
                Align::Right => "---:|",
            });
        }
        s.push('\n');
        for row in &self.rows {
            s.push('|');
            for cell in row {
                s.push_str(&format!(" {cell} |"));
            }
            s.push('\n');
        }
        s
    }

    /// The HTML table, one line per row, every line ended by a newline; cells escaped, and
    /// right-aligned columns styled so.
    pub fn html(&self) -> String {
        let mut s = String::from("<table>\n<tr>");
        let style = |a: &Align| match a {
            Align::Left => "",
            Align::Right => " style=\"text-align:right\"",
        };
        for (h, a) in self.headers.iter().zip(&self.align) {
            s.push_str(&format!("<th{}>{}</th>", style(a), escape(h)));
        }
        s.push_str("</tr>\n");
        for row in &self.rows {
            s.push_str("<tr>");
            for (cell, a) in row.iter().zip(&self.align) {
                s.push_str(&format!("<td{}>{}</td>", style(a), escape(cell)));
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</table>\n");
        s
    }
}

/// `text` with `&`, `<` and `>` escaped, for HTML text content.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Table {
        let mut t = Table::new([("model", Align::Left), ("error %", Align::Right)]);
        t.row(["LeNet", "1.00"]);
        t.row(["a <b> & c", ""]);
        t
    }

    /// The pipe table written by hand: `---:` for the right-aligned column, an empty cell as
    /// two spaces between its bars.
    #[test]
    fn markdown_hand_written() {
        assert_eq!(
            example().markdown(),
            "| model | error % |\n|---|---:|\n| LeNet | 1.00 |\n| a <b> & c |  |\n"
        );
        let mut headless = Table::left(["", ""]);
        headless.row(["CPU", "x"]);
        assert_eq!(headless.markdown(), "| | |\n|---|---|\n| CPU | x |\n");
    }

    #[test]
    fn html_hand_written() {
        let right = " style=\"text-align:right\"";
        assert_eq!(
            example().html(),
            format!(
                "<table>\n<tr><th>model</th><th{right}>error %</th></tr>\n\
                 <tr><td>LeNet</td><td{right}>1.00</td></tr>\n\
                 <tr><td>a &lt;b&gt; &amp; c</td><td{right}></td></tr>\n</table>\n"
            )
        );
    }

    #[test]
    #[should_panic(expected = "a row of 1 cells in a table of 2 columns")]
    fn rows_must_fill_every_column() {
        example().row(["only one"]);
    }
}
