//! The three kinds of question `new` asks at a terminal (a line of text,
//! yes or no, one entry of a list), drawn with a dialoguer theme and read
//! key by key with console.
//!
//! They live here rather than in dialoguer because its prompts ignore
//! Ctrl-D, so a person who ends the input waits forever. Here Ctrl-D ends
//! the interview (`end_of_input`), as end of input does everywhere else;
//! Ctrl-C raises SIGINT as before (console does that while it reads a key).

use std::io;

use console::{Key, Term, measure_text_width};
use dialoguer::theme::Theme;

const CTRL_D: char = '\u{4}';
const CTRL_U: char = '\u{15}';

/// The error a question returns when the person pressed Ctrl-D.
pub fn end_of_input() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "end of input (Ctrl-D)")
}

/// A line of text, editable: typed characters, Backspace, Delete, the
/// arrows, Home/End (Ctrl-A/Ctrl-E), Ctrl-U to clear. `initial` is the text
/// to start from; Enter on an empty line answers `default`, if any.
pub fn text(theme: &dyn Theme, prompt: &str, default: Option<&str>, initial: &str) -> io::Result<String> {
    let mut screen = Screen::new()?;
    let mut head = String::new();
    theme.format_input_prompt(&mut head, prompt, default).map_err(io::Error::other)?;
    let mut chars: Vec<char> = initial.chars().collect();
    let mut pos = chars.len();
    loop {
        let typed: String = chars.iter().collect();
        let before: String = chars[..pos].iter().collect();
        let line = format!("{head}{typed}");
        screen.draw(&[line], Some((0, &format!("{head}{before}"))))?;
        match screen.key()? {
            Key::Enter => break,
            Key::Char(CTRL_D) => return Err(end_of_input()),
            Key::Char(CTRL_U) => {
                chars.clear();
                pos = 0;
            }
            Key::Char(c) if !c.is_control() => {
                chars.insert(pos, c);
                pos += 1;
            }
            Key::Backspace if pos > 0 => {
                pos -= 1;
                chars.remove(pos);
            }
            Key::Del if pos < chars.len() => {
                chars.remove(pos);
            }
            Key::ArrowLeft if pos > 0 => pos -= 1,
            Key::ArrowRight if pos < chars.len() => pos += 1,
            Key::Home => pos = 0,
            Key::End => pos = chars.len(),
            _ => {}
        }
    }
    let typed: String = chars.into_iter().collect();
    let answer = match default {
        Some(d) if typed.is_empty() => d.to_owned(),
        _ => typed,
    };
    let mut done = String::new();
    theme.format_input_prompt_selection(&mut done, prompt, &answer).map_err(io::Error::other)?;
    screen.finish(&done)?;
    Ok(answer)
}

/// Yes or no: `y` or `n` changes the answer shown, Enter takes it (or
/// `default` when nothing was typed), so a key meant for one question is
/// never the answer to the next.
pub fn confirm(theme: &dyn Theme, prompt: &str, default: bool) -> io::Result<bool> {
    let mut screen = Screen::new()?;
    let mut choice: Option<bool> = None;
    loop {
        // The theme shows the answer Enter would take: the default, or the key typed.
        let mut line = String::new();
        theme
            .format_confirm_prompt(&mut line, prompt, Some(choice.unwrap_or(default)))
            .map_err(io::Error::other)?;
        screen.draw(&[line.clone()], Some((0, &line)))?;
        match screen.key()? {
            Key::Enter => break,
            Key::Char(CTRL_D) => return Err(end_of_input()),
            Key::Char('y' | 'Y') => choice = Some(true),
            Key::Char('n' | 'N') => choice = Some(false),
            Key::Backspace | Key::Char(CTRL_U) => choice = None,
            _ => {}
        }
    }
    let answer = choice.unwrap_or(default);
    let mut done = String::new();
    theme.format_confirm_prompt_selection(&mut done, prompt, Some(answer)).map_err(io::Error::other)?;
    screen.finish(&done)?;
    Ok(answer)
}

/// One entry of a list: the arrows (or `j`/`k`, Tab) move, Enter or Space
/// picks. A list taller than the terminal scrolls.
pub fn select(theme: &dyn Theme, prompt: &str, items: &[String], default: usize) -> io::Result<usize> {
    if items.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a list question needs entries"));
    }
    let mut screen = Screen::new()?;
    let mut head = String::new();
    theme.format_select_prompt(&mut head, prompt).map_err(io::Error::other)?;
    let mut active = default.min(items.len() - 1);
    screen.hide_cursor()?;
    let mut first = 0;
    let picked = loop {
        let height = usize::from(screen.term.size().0).saturating_sub(2).max(3);
        // The window moves only when the active entry would leave it.
        if active < first {
            first = active;
        } else if active >= first + height {
            first = active + 1 - height;
        }
        first = first.min(items.len().saturating_sub(height));
        let mut lines = vec![head.clone()];
        for (i, item) in items.iter().enumerate().skip(first).take(height) {
            let mut line = String::new();
            theme.format_select_prompt_item(&mut line, item, i == active).map_err(io::Error::other)?;
            lines.push(line);
        }
        screen.draw(&lines, None)?;
        match screen.key() {
            Ok(Key::Enter | Key::Char(' ')) => break Ok(active),
            Ok(Key::Char(CTRL_D)) => break Err(end_of_input()),
            Ok(Key::ArrowUp | Key::BackTab | Key::Char('k')) => {
                active = (active + items.len() - 1) % items.len();
            }
            Ok(Key::ArrowDown | Key::Tab | Key::Char('j')) => active = (active + 1) % items.len(),
            Ok(Key::Home) => active = 0,
            Ok(Key::End) => active = items.len() - 1,
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    let active = picked?;
    let mut done = String::new();
    theme.format_select_prompt_selection(&mut done, prompt, &items[active]).map_err(io::Error::other)?;
    screen.finish(&done)?;
    Ok(active)
}

/// Where the cursor is after `text` is written from the start of a row of
/// `width` columns: (rows down, column). The terminal moves a character
/// that does not fit to the next row, a wide one too when one column is
/// left; after a full row the cursor waits at its end (column `width`).
fn wrapped(text: &str, width: usize) -> (usize, usize) {
    let (mut row, mut column) = (0, 0);
    let mut buf = [0; 4];
    for c in console::strip_ansi_codes(text).chars() {
        let w = measure_text_width(c.encode_utf8(&mut buf));
        if column + w > width {
            (row, column) = (row + 1, 0);
        }
        column += w;
    }
    (row, column)
}

/// The rows a question has drawn on stderr, redrawn in place on every key.
/// A question that ends without an answer (Ctrl-D, an error) leaves its
/// drawing as it is, the cursor below it and visible (see `Drop`).
struct Screen {
    term: Term,
    /// Rows between the first row drawn and the cursor.
    cursor_row: usize,
    /// Rows between the first row drawn and the last.
    end_row: usize,
    cursor_hidden: bool,
    finished: bool,
}

impl Screen {
    fn new() -> io::Result<Screen> {
        let term = Term::buffered_stderr();
        if !term.is_term() {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "not a terminal"));
        }
        Ok(Screen { term, cursor_row: 0, end_row: 0, cursor_hidden: false, finished: false })
    }

    fn hide_cursor(&mut self) -> io::Result<()> {
        self.cursor_hidden = true;
        self.term.hide_cursor()
    }

    fn key(&self) -> io::Result<Key> {
        self.term.read_key()
    }

    /// Erase the last drawing and draw `lines`; with `cursor` (a line and a
    /// column within it) the cursor goes there, else it stays at the end.
    /// Long lines wrap at the terminal's width, and the row arithmetic
    /// follows them.
    fn draw(&mut self, lines: &[String], cursor: Option<(usize, &str)>) -> io::Result<()> {
        let width = usize::from(self.term.size().1).max(1);
        self.erase()?;
        self.term.write_str(&lines.join("\n"))?;
        let rows = |text: &str| wrapped(text, width).0 + 1;
        let mut end_row = lines.iter().map(|l| rows(l)).sum::<usize>() - 1;
        self.cursor_row = end_row;
        self.end_row = end_row;
        if let Some((line, before)) = cursor {
            let (mut row, mut column) = wrapped(before, width);
            if column == width {
                (row, column) = (row + 1, 0);
            }
            let target = lines[..line].iter().map(|l| rows(l)).sum::<usize>() + row;
            if target > end_row {
                // The text fills its last row exactly: the cursor belongs at
                // the start of the next one.
                self.term.write_str("\r\n")?;
                end_row += 1;
                self.end_row = end_row;
            }
            self.term.move_cursor_up(end_row - target)?;
            self.term.write_str("\r")?;
            self.term.move_cursor_right(column)?;
            self.cursor_row = target;
        }
        self.term.flush()
    }

    fn erase(&mut self) -> io::Result<()> {
        self.term.move_cursor_up(self.cursor_row)?;
        self.term.write_str("\r")?;
        self.term.clear_to_end_of_screen()?;
        self.cursor_row = 0;
        self.end_row = 0;
        Ok(())
    }

    /// Replace the question with its one-line answer and move below it.
    fn finish(&mut self, done: &str) -> io::Result<()> {
        self.erase()?;
        self.term.write_line(done)?;
        if self.cursor_hidden {
            self.term.show_cursor()?;
            self.cursor_hidden = false;
        }
        self.finished = true;
        self.term.flush()
    }
}

impl Drop for Screen {
    /// Unanswered: move below the drawing so what is printed next starts on
    /// a line of its own, and show the cursor again.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let _ = self.term.move_cursor_down(self.end_row.saturating_sub(self.cursor_row));
        let _ = self.term.write_str("\r\n");
        if self.cursor_hidden {
            let _ = self.term.show_cursor();
        }
        let _ = self.term.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::wrapped;

    #[test]
    fn rows_follow_the_terminal_wrap() {
        assert_eq!(wrapped("", 10), (0, 0));
        assert_eq!(wrapped("abc", 10), (0, 3));
        assert_eq!(wrapped("abcdefghij", 10), (0, 10), "a full row: the cursor waits at its end");
        assert_eq!(wrapped("abcdefghijk", 10), (1, 1));
        assert_eq!(wrapped("abcdefghi日", 10), (1, 2), "a wide character that does not fit moves down");
        assert_eq!(wrapped("\x1b[1mabc\x1b[0m", 10), (0, 3), "colour codes take no room");
    }
}
