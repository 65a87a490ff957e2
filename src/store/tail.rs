//! Reading a trail file's lines, bounded in length: the last few without
//! reading it all (what an edit checks), or every one in order (a walk).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};

use super::trail::MAX_LINE;

/// The end of a trail file: its last complete records and any incomplete
/// line after them.
#[derive(Debug, Default)]
pub struct TailBytes {
    /// The last complete lines (without `\n`), oldest first.
    pub lines: Vec<Vec<u8>>,
    /// Byte offset just after the last complete line.
    pub complete_len: u64,
    /// Bytes after the last `\n`: an append that did not finish.
    pub partial: Vec<u8>,
}

/// Reads the last `want` complete lines of a file without reading it all.
pub fn read_tail(file: &mut File, want: usize) -> io::Result<TailBytes> {
    let len = file.seek(SeekFrom::End(0))?;
    let mut window: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::with_capacity((len - start) as usize);
        file.take(len - start).read_to_end(&mut buf)?;
        let last_nl = buf.iter().rposition(|&b| b == b'\n');
        let newlines = buf.iter().filter(|&&b| b == b'\n').count();
        // `want` complete lines need `want` newlines ending them plus one
        // before the first, unless the window reaches the start of the file.
        if newlines > want || start == 0 {
            let complete_end = last_nl.map_or(0, |i| i + 1);
            let partial = buf[complete_end..].to_vec();
            let complete = &buf[..complete_end];
            let mut lines: Vec<Vec<u8>> = complete
                .split(|&b| b == b'\n')
                .map(<[u8]>::to_vec)
                .collect();
            lines.pop(); // after the final '\n'
            if start > 0 {
                lines.remove(0); // cut by the window
            }
            let skip = lines.len().saturating_sub(want);
            lines.drain(..skip);
            return Ok(TailBytes {
                lines,
                complete_len: start + complete_end as u64,
                partial,
            });
        }
        if window >= len || window > MAX_LINE as u64 * 4 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the last records are longer than any record can be",
            ));
        }
        window *= 4;
    }
}

/// Streams the complete lines of a trail, bounded in length; the bytes
/// after the last `\n`, if any, come back as `Line::Partial`.
pub struct Lines<R> {
    reader: BufReader<R>,
    buf: Vec<u8>,
    pub line_no: u64,
}

pub enum Line<'b> {
    Complete(&'b [u8]),
    Partial(&'b [u8]),
}

impl<R: Read> Lines<R> {
    pub fn new(inner: R) -> Self {
        Lines {
            reader: BufReader::with_capacity(256 * 1024, inner),
            buf: Vec::new(),
            line_no: 0,
        }
    }

    /// The next line and its 1-based number, or `None` at the end.
    pub fn next_line(&mut self) -> io::Result<Option<(u64, Line<'_>)>> {
        self.buf.clear();
        let n = (&mut self.reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        self.line_no += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            return Ok(Some((self.line_no, Line::Complete(&self.buf))));
        }
        if n > MAX_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line {} is longer than {MAX_LINE} bytes", self.line_no),
            ));
        }
        // Peek: if more follows, the limit cut the line; else it is the end.
        if self.reader.fill_buf()?.is_empty() {
            Ok(Some((self.line_no, Line::Partial(&self.buf))))
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line {} is longer than {MAX_LINE} bytes", self.line_no),
            ))
        }
    }
}
