//! The web console at `/` (one self-contained page that polls the API) and `/static/` files
//! (where `scripts/console-deps.sh` puts mpegts.js, the player library the page uses).

use super::Reply;

const PAGE: &str = include_str!("console.html");

/// The console page.
pub fn page() -> Reply {
    Reply {
        status: 200,
        content_type: "text/html; charset=utf-8",
        body: PAGE.as_bytes().to_vec(),
    }
}

/// A file from `dir`; only plain names (no paths) are served.
pub fn static_file(dir: &str, name: &str) -> Reply {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !plain {
        return Reply::text(404, "not found");
    }
    let content_type = match name.rsplit('.').next() {
        Some("js") => "application/javascript",
        Some("map") | Some("json") => "application/json",
        Some("css") => "text/css",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    match std::fs::read(std::path::Path::new(dir).join(name)) {
        Ok(body) => Reply {
            status: 200,
            content_type,
            body,
        },
        Err(_) => Reply::text(404, "not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names() {
        assert_eq!(static_file("/etc", "../passwd").status, 404);
        assert_eq!(static_file("/etc", ".hidden").status, 404);
        assert_eq!(static_file("/nonexistent-dir", "mpegts.js").status, 404);
        assert_eq!(page().status, 200);
    }
}
