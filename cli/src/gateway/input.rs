//! Where readings come from: stdin, a UDP port on loopback, or a file (or serial device)
//! followed as it grows. Each source sends numbered lines on one channel.

use std::{path::PathBuf, time::Duration};

use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncSeekExt, BufReader},
    net::UdpSocket,
    sync::mpsc,
};

/// One input line.
#[derive(Debug)]
pub(crate) struct Input {
    /// `stdin`, `udp` or the followed path.
    pub(crate) source: String,
    /// 1-based line number within the source.
    pub(crate) line_no: u64,
    /// The line, or the length of a line too long to keep.
    pub(crate) text: Result<String, usize>,
}

/// How often a followed file is checked for growth (no file-change notification without an
/// extra dependency; a tenth of a second is far below telemetry intervals).
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Reads one line of at most `max` bytes into `buf` (without the newline). A longer line is
/// consumed to its end and reported as `Err(length)`, never buffered whole. `None` at EOF.
async fn read_line_capped<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<Result<(), usize>>> {
    buf.clear();
    let mut len = 0usize;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if len == 0 {
                None
            } else if len > max {
                Some(Err(len))
            } else {
                Some(Ok(()))
            });
        }
        let (part, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        len += part.len();
        if len <= max {
            buf.extend_from_slice(part);
        }
        let used = done.unwrap_or(chunk.len());
        r.consume(used);
        if done.is_some() {
            return Ok(Some(if len > max { Err(len) } else { Ok(()) }));
        }
    }
}

/// Sends every line of `reader` as `source`; returns at EOF or when nobody listens.
async fn pump_lines<R: AsyncRead + Unpin>(
    reader: R,
    source: String,
    max: usize,
    tx: &mpsc::Sender<Input>,
    follow: bool,
) -> std::io::Result<()> {
    let mut r = BufReader::new(reader);
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        match read_line_capped(&mut r, &mut buf, max).await? {
            Some(line) => {
                line_no += 1;
                let text = line.map(|()| String::from_utf8_lossy(&buf).trim_end().to_owned());
                if matches!(&text, Ok(t) if t.is_empty()) {
                    continue;
                }
                let input = Input {
                    source: source.clone(),
                    line_no,
                    text,
                };
                if tx.send(input).await.is_err() {
                    return Ok(());
                }
            }
            None if follow => tokio::time::sleep(FOLLOW_POLL).await,
            None => return Ok(()),
        }
    }
}

/// Reads stdin to its end.
pub(crate) fn stdin(max: usize, tx: mpsc::Sender<Input>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = pump_lines(tokio::io::stdin(), "stdin".into(), max, &tx, false).await {
            eprintln!("stdin: {e}");
        }
    })
}

/// Receives datagrams on 127.0.0.1:`port`, each holding one or more lines; runs until the
/// gateway stops.
pub(crate) async fn udp(
    port: u16,
    max: usize,
    tx: mpsc::Sender<Input>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let socket = UdpSocket::bind(("127.0.0.1", port)).await?;
    Ok(tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        let mut line_no = 0;
        while let Ok(n) = socket.recv(&mut buf).await {
            for line in String::from_utf8_lossy(&buf[..n]).lines() {
                let line = line.trim_end();
                if line.is_empty() {
                    continue;
                }
                line_no += 1;
                let text = if line.len() > max {
                    Err(line.len())
                } else {
                    Ok(line.to_owned())
                };
                let input = Input {
                    source: "udp".into(),
                    line_no,
                    text,
                };
                if tx.send(input).await.is_err() {
                    return;
                }
            }
        }
    }))
}

/// Follows `path` from its current end, as `tail -f` does: lines appended later are read as
/// they come (a serial device path works the same way).
pub(crate) async fn follow(
    path: PathBuf,
    max: usize,
    tx: mpsc::Sender<Input>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut file = tokio::fs::File::open(&path).await?;
    // Regular files start at their end; devices cannot seek and start where they are.
    let _ = file.seek(std::io::SeekFrom::End(0)).await;
    let source = path.display().to_string();
    Ok(tokio::spawn(async move {
        if let Err(e) = pump_lines(file, source.clone(), max, &tx, true).await {
            eprintln!("{source}: {e}");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_skipped_not_buffered() {
        let data = format!("ok\n{}\nlast", "x".repeat(100));
        let mut r = BufReader::with_capacity(8, data.as_bytes());
        let mut buf = Vec::new();
        assert_eq!(
            read_line_capped(&mut r, &mut buf, 10).await.unwrap(),
            Some(Ok(()))
        );
        assert_eq!(buf, b"ok");
        assert_eq!(
            read_line_capped(&mut r, &mut buf, 10).await.unwrap(),
            Some(Err(100))
        );
        assert!(buf.len() <= 10, "never more than the limit held");
        assert_eq!(
            read_line_capped(&mut r, &mut buf, 10).await.unwrap(),
            Some(Ok(()))
        );
        assert_eq!(buf, b"last");
        assert_eq!(read_line_capped(&mut r, &mut buf, 10).await.unwrap(), None);
    }
}
