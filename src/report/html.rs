//! Small builders for the report pages. The pages are written by hand with [`esc`] on every
//! piece of text that comes from a file, rather than with a template crate: two pages do not
//! pay for a dependency, and the escaping rule is one function to review.

use std::fmt::Write as _;

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 (RFC 4648, with padding), for PNG data URIs. Written here because the
/// `base64` crate is in the tree only through the optional `download` feature's HTTP client,
/// and twenty lines are cheaper than a dependency of every build.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A number as JSON writes it (what `summary.json` holds), for the `data-value` attributes a
/// script (or a test) reads the page's numbers from.
pub fn json_number(v: f64) -> String {
    serde_json::to_string(&v).unwrap_or_else(|_| "null".into())
}

/// `96.33%` from 0.9633.
pub fn percent(v: f64) -> String {
    if v.is_finite() {
        format!("{:.2}%", v * 100.0)
    } else {
        "–".into()
    }
}

/// A table cell showing `shown`, carrying the exact number and the name it has in the files.
pub fn num_cell(key: &str, v: f64, shown: &str) -> String {
    format!(
        "<td class=\"num\" data-key=\"{}\" data-value=\"{}\">{}</td>",
        esc(key),
        json_number(v),
        esc(shown)
    )
}

/// A chart from plotters' SVG, inlined: sized by the page (its viewBox keeps the aspect), and
/// without the namespace URL, which the HTML parser does not need.
pub fn inline_svg(svg: &str, title: &str) -> String {
    let Some(body) = svg.find("<svg").map(|i| &svg[i..]) else {
        return String::new();
    };
    let Some(end) = body.find('>') else {
        return String::new();
    };
    let mut head = body[..end].to_string();
    for attr in ["width", "height", "xmlns"] {
        let Some(start) = head.find(&format!(" {attr}=\"")) else {
            continue;
        };
        let value = start + attr.len() + 3;
        if let Some(len) = head[value..].find('"') {
            head.replace_range(start..value + len + 1, "");
        }
    }
    format!(
        "{head} role=\"img\" aria-label=\"{}\">{}",
        esc(title),
        &body[end + 1..]
    )
}

/// A `<dl>`-like two-column table of facts.
#[derive(Default)]
pub struct Facts(String);

impl Facts {
    /// A row whose value is already HTML.
    pub fn raw(&mut self, name: &str, html: &str) -> &mut Self {
        let _ = write!(self.0, "<tr><th>{}</th><td>{html}</td></tr>", esc(name));
        self
    }

    pub fn text(&mut self, name: &str, value: &str) -> &mut Self {
        self.raw(name, &esc(value))
    }

    pub fn html(&self) -> String {
        format!("<table class=\"facts\">{}</table>", self.0)
    }
}

/// A note that something is missing: said on the page, never an error.
pub fn missing(text: &str) -> String {
    format!("<p class=\"missing\">{}</p>", esc(text))
}

const CSS: &str = "\
:root{--ink:#1d2330;--muted:#5b6474;--line:#dde1e8;--accent:#1f77b4;--bg:#f5f6f8}\
*{box-sizing:border-box}\
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}\
main{max-width:1280px;margin:0 auto;padding:20px 24px 40px}\
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:0 0 10px}\
.sub{color:var(--muted);margin:0 0 16px}\
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:16px 18px;margin:0 0 16px}\
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:16px}\
.grid>section{margin:0}\
table{border-collapse:collapse;font-variant-numeric:tabular-nums}\
th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}\
thead th{background:#eef1f5;font-weight:600}\
td.num,th.num{text-align:right}\
table.facts th{color:var(--muted);font-weight:500;white-space:nowrap}\
tr.best td{background:#e8f4e8;font-weight:600}\
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:13px;background:#e7eef7;color:#1f4f7a}\
.badge.warn{background:#fdf0d8;color:#7a4b00}.badge.bad{background:#fbe3e3;color:#8a1c1c}.badge.ok{background:#e3f4e3;color:#1d5e1d}\
pre,code{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}\
pre{background:#f3f4f7;border:1px solid var(--line);border-radius:6px;padding:10px;overflow:auto;max-height:420px;margin:6px 0}\
figure{margin:0}figure svg,figure img{width:100%;height:auto;display:block;border:1px solid var(--line);border-radius:4px}\
figcaption{color:var(--muted);font-size:13px;margin-top:4px}\
.missing{color:var(--muted);font-style:italic;margin:4px 0}\
table.cm td{width:44px;text-align:center;padding:3px 2px;border:1px solid #fff;font-size:13px}\
table.cm th{font-size:13px;padding:3px 6px}\
.scroll{overflow-x:auto}\
a{color:var(--accent)}a.bad{color:#8a1c1c}\
.runs a{margin-right:6px;white-space:nowrap}\
footer{color:var(--muted);font-size:12px;text-align:center}";

/// The page's only script, and an optional one: once the page has loaded it records on
/// `<html data-images="TOTAL BROKEN">` how many images it has and how many failed to decode,
/// which the browser check (scripts/check-report-browser.sh) reads from the DOM.
const SCRIPT: &str = "addEventListener('load',function(){var i=document.images,b=0;\
for(var k=0;k<i.length;k++){if(!(i[k].complete&&i[k].naturalWidth>0))b++}\
document.documentElement.setAttribute('data-images',i.length+' '+b)})";

/// The whole document: one file, no external resource, readable without JavaScript.
pub fn page(title: &str, subtitle: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\
         <title>{}</title><style>{CSS}</style><script>{SCRIPT}</script></head>\n<body><main>\
         <h1>{}</h1><p class=\"sub\">{}</p>\n{body}\n<footer>written by mnist-train {} \
         (mnist-train report); one self-contained file</footer></main></body></html>\n",
        esc(title),
        esc(title),
        subtitle,
        env!("CARGO_PKG_VERSION"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn text_is_escaped_and_svgs_are_sized_by_the_page() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let svg = "<svg width=\"10\" height=\"20\" viewBox=\"0 0 10 20\" \
                   xmlns=\"http://www.w3.org/2000/svg\">\n<rect/></svg>";
        let inlined = inline_svg(svg, "a <chart>");
        assert_eq!(
            inlined,
            "<svg viewBox=\"0 0 10 20\" role=\"img\" aria-label=\"a &lt;chart&gt;\">\n<rect/></svg>"
        );
    }
}
