//! Plain-text tables for the human output of the commands.

/// The side a column's cells are aligned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// Renders `rows` (the first row is the header) with columns separated by
/// two spaces: the first column left-aligned, the others right-aligned.
pub fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let mut align = vec![Align::Right; columns];
    if let Some(first) = align.first_mut() {
        *first = Align::Left;
    }
    render_aligned(rows, &align)
}

/// Renders `rows` (the first row is the header) with columns separated by
/// two spaces and aligned as given by `align`. The last column is not padded on
/// the right, so lines carry no trailing spaces.
pub fn render_aligned(rows: &[Vec<String>], align: &[Align]) -> String {
    let mut widths = vec![0; align.len()];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }

    let mut out = String::new();
    for row in rows {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column > 0 {
                line.push_str("  ");
            }
            let padding = widths[column] - cell.chars().count();
            match align[column] {
                Align::Right => {
                    line.extend(std::iter::repeat_n(' ', padding));
                    line.push_str(cell);
                }
                Align::Left => {
                    line.push_str(cell);
                    if column < last {
                        line.extend(std::iter::repeat_n(' ', padding));
                    }
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
