//! A page opened in a real browser: headless Chromium (Debian's
//! `chromium`, had by the rule of [`tools`](super::tools)) renders a file
//! to a PNG screenshot, which is decoded here, and its console log is kept
//! to look for script and page errors.

use std::path::Path;
use std::process::Command;

use super::{tools, Process, TIMEOUT};

/// What the browser made of a page.
#[derive(Debug)]
pub struct Rendered {
    /// The screenshot's width in pixels.
    pub width: u32,
    /// Its height.
    pub height: u32,
    /// Its pixels, RGB, row by row.
    pub rgb: Vec<[u8; 3]>,
    /// Chromium's log (stderr, with `--enable-logging=stderr --v=0`):
    /// console messages are in it as `CONSOLE` lines.
    pub log: String,
}

impl Rendered {
    /// The share of pixels (0 to 1) that are not the page's white.
    pub fn share_not_white(&self) -> f64 {
        let inked = self
            .rgb
            .iter()
            .filter(|p| p.iter().any(|&c| c < 240))
            .count();
        inked as f64 / self.rgb.len().max(1) as f64
    }

    /// How many pixels are coloured (not white, grey or black): the
    /// charts' lines; text and table borders are grey.
    pub fn coloured(&self) -> usize {
        self.rgb
            .iter()
            .filter(|p| {
                let (max, min) = (p.iter().max().unwrap_or(&0), p.iter().min().unwrap_or(&0));
                max - min > 60
            })
            .count()
    }

    /// The console lines: an uncaught exception, or any console message
    /// (this Chromium logs `console.error` as `INFO:CONSOLE`, so the level
    /// cannot tell; a page without scripts logs one only for trouble,
    /// such as a resource it may not load).
    pub fn console_errors(&self) -> Vec<&str> {
        self.log
            .lines()
            .filter(|l| l.contains("Uncaught") || l.contains(":CONSOLE"))
            .collect()
    }
}

/// Renders `page` at `size` in headless Chromium; `None` after saying why
/// the test `test` skips (no Chromium, by the rule for tools).
pub fn render(test: &str, page: &Path, size: (u32, u32)) -> Option<Rendered> {
    let chromium = tools::program(test, "chromium", "chromium")?;
    let dir = page.parent().expect("the page's folder");
    let shot = dir.join("screenshot.png");
    let profile = dir.join("chromium-profile");
    let _ = std::fs::remove_file(&shot);
    let page = std::fs::canonicalize(page).expect("the page's full path");
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--screenshot={}", shot.display()))
    .arg(format!("--window-size={},{}", size.0, size.1))
    .arg(format!("file://{}", page.display()));
    let exit = Process::spawn("chromium", &mut cmd).finish(TIMEOUT * 3);
    let log = exit.stderr_text();
    assert!(exit.status.success(), "chromium failed:\n{log}");
    let file = std::fs::File::open(&shot)
        .unwrap_or_else(|e| panic!("no screenshot {}: {e}\n{log}", shot.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("a PNG screenshot");
    let mut buf = vec![0; reader.output_buffer_size().expect("a PNG of a sane size")];
    let info = reader.next_frame(&mut buf).expect("decode the screenshot");
    let channels = info.color_type.samples();
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "{info:?}");
    let rgb = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|p| {
            if channels >= 3 {
                [p[0], p[1], p[2]]
            } else {
                [p[0]; 3]
            }
        })
        .collect();
    Some(Rendered {
        width: info.width,
        height: info.height,
        rgb,
        log,
    })
}
