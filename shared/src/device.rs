//! What a user sees of the browser behind a session: "Chrome 131 on macOS", read once from the
//! `User-Agent` header at create.
//!
//! A user agent names its browser with product tokens (`Chrome/131.0.0.0`, `Edg/131.0.0.0`) and
//! its platform in the first parenthesis (`Macintosh; Intel Mac OS X 10_15_7`). A Chromium-based
//! browser also says `Chrome/` and `Safari/`, a Safari `Version/`, so the tokens are tried from
//! the most specific to the most general. The rules are woothee's for the browsers and systems
//! a session list shows (a test holds this reader to woothee's labels on current agents); they
//! are written out here because woothee's patterns bring the `regex` crate, a megabyte in the
//! bootstraps of create and list, for about twenty substring searches.

/// Longest device label kept with a session, in bytes.
pub const MAX_DEVICE_LEN: usize = 48;

/// The label of `user_agent`: "Chrome 131 on macOS", "Firefox 133 on Linux", "Safari 18 on
/// iPhone"; the browser or the OS alone when only one is known; `None` when neither is.
///
/// At most [`MAX_DEVICE_LEN`] bytes, without control characters, `|` or `/`, so that it is
/// stored as is and never mistaken for a user agent (records written before labels existed
/// hold the first 64 bytes of one, which [`stored_device`] turns into a label).
pub fn device_label(user_agent: &str) -> Option<String> {
    // No user agent is long; a longer one is read for its first kilobyte, where browsers say
    // what they are.
    let mut end = user_agent.len().min(1024);
    while !user_agent.is_char_boundary(end) {
        end -= 1;
    }
    let agent = &user_agent[..end];
    let browser = browser(agent).map(|(name, version)| match version {
        Some(major) => format!("{name} {major}"),
        None => name.to_owned(),
    });
    let label = match (browser, os(agent)) {
        (Some(browser), Some(os)) => format!("{browser} on {os}"),
        (Some(browser), None) => browser,
        (None, Some(os)) => os.to_owned(),
        (None, None) => return None,
    };
    let mut out = String::new();
    for c in label
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '|' || c == '/' { ' ' } else { c })
    {
        if out.len() + c.len_utf8() > MAX_DEVICE_LEN {
            break;
        }
        out.push(c);
    }
    let out = out.trim().to_owned();
    (!out.is_empty()).then_some(out)
}

/// What to show of a stored session's device: a label as it is, or (in a record written before
/// labels existed) the first bytes of a user agent, labelled here.
pub fn stored_device(stored: &str) -> Option<String> {
    if stored.is_empty() {
        None
    } else if stored.contains('/') {
        device_label(stored)
    } else {
        Some(stored.to_owned())
    }
}

/// The browser's name and major version. In woothee's order: a browser built on Chromium names
/// itself beside `Chrome/` and `Safari/`, so its own token is looked for first.
fn browser(agent: &str) -> Option<(&'static str, Option<&str>)> {
    if let Some(version) = version_after(agent, "MSIE ") {
        return Some(("Internet Explorer", version));
    }
    if agent.contains("Trident/") {
        return Some(("Internet Explorer", version_after(agent, " rv:").flatten()));
    }
    let tokens: [(&str, &'static str); 7] = [
        ("Edg/", "Edge"),
        ("EdgA/", "Edge"),
        ("EdgiOS/", "Edge"),
        ("Edge/", "Edge"),
        ("Vivaldi/", "Vivaldi"),
        ("FxiOS/", "Firefox"),
        ("YaBrowser/", "Yandex Browser"),
    ];
    for (token, name) in tokens {
        if let Some(version) = version_after(agent, token) {
            return Some((name, version));
        }
    }
    if agent.contains("Safari/") && !(agent.contains("Chrome") && agent.contains("wv")) {
        if let Some(version) = version_after(agent, "SamsungBrowser/") {
            return Some(("Samsung Internet", version));
        }
        let chrome = ["Chrome/", "CrMo/", "CriOS/"]
            .into_iter()
            .find_map(|token| version_after(agent, token));
        if let Some(version) = chrome {
            return Some(match version_after(agent, "OPR/") {
                Some(opera) => ("Opera", opera),
                None => ("Chrome", version),
            });
        }
        return Some(("Safari", version_after(agent, "Version/").flatten()));
    }
    if let Some(version) = version_after(agent, "Firefox/") {
        return Some(("Firefox", version));
    }
    if agent.contains("Opera") {
        let version = version_after(agent, "Version/")
            .or_else(|| version_after(agent, "Opera/"))
            .or_else(|| version_after(agent, "Opera "));
        return Some(("Opera", version.flatten()));
    }
    const LIBRARIES: [&str; 7] = [
        "curl/",
        "Wget/",
        "Python-urllib/",
        "Java/",
        "Apache-HttpClient/",
        "libwww-perl",
        "Jakarta Commons-HttpClient/",
    ];
    if LIBRARIES.iter().any(|library| agent.starts_with(library)) {
        return Some(("HTTP Library", None));
    }
    None
}

/// `Some` when `token` is in `agent`, with the major version that follows it (its leading
/// digits), if any.
fn version_after<'a>(agent: &'a str, token: &str) -> Option<Option<&'a str>> {
    let at = agent.find(token)? + token.len();
    let rest = &agent[at..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    Some((digits > 0).then(|| &rest[..digits]))
}

/// The operating system, in the order woothee tries them: a phone's user agent also says
/// "like Mac OS X" or "Linux", ChromeOS says "X11".
fn os(agent: &str) -> Option<&'static str> {
    let systems: [(&str, &'static str); 11] = [
        ("Windows Phone", "Windows Phone OS"),
        ("Windows", "Windows"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("iPod", "iPod"),
        ("Android", "Android"),
        ("CrOS", "ChromeOS"),
        ("Macintosh", "macOS"),
        ("Mac OS X", "macOS"),
        ("Linux", "Linux"),
        ("BSD", "BSD"),
    ];
    systems
        .into_iter()
        .find(|(token, _)| agent.contains(token))
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

    #[test]
    fn devices_are_short_labels() {
        let cases = [
            (CHROME_MAC, Some("Chrome 131 on macOS")),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
                Some("Edge 131 on Windows"),
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
                Some("Firefox 133 on Linux"),
            ),
            ("curl/8.5.0", Some("HTTP Library")),
            ("", None),
            ("\u{0}\u{1}|||", None),
        ];
        for (ua, want) in cases {
            assert_eq!(device_label(ua).as_deref(), want, "{ua:?}");
        }
        let long = format!("{CHROME_MAC} {}", "x/1 ".repeat(10_000));
        let label = device_label(&long).unwrap();
        assert!(label.len() <= MAX_DEVICE_LEN);
        for junk in ["é".repeat(3000), "Mozilla/5.0 (|/|\n) Firefox/".repeat(50)] {
            let label = device_label(&junk).unwrap_or_default();
            assert!(label.len() <= MAX_DEVICE_LEN, "{label:?}");
            assert!(!label.contains(['|', '/']) && !label.chars().any(char::is_control));
        }
    }

    #[test]
    fn a_stored_user_agent_reads_as_its_label() {
        // What records written before labels existed hold: the first 64 bytes of a user agent.
        assert_eq!(
            stored_device(&CHROME_MAC[..64]),
            device_label(&CHROME_MAC[..64])
        );
        assert_eq!(
            stored_device("Chrome 131 on macOS").as_deref(),
            Some("Chrome 131 on macOS")
        );
        assert_eq!(stored_device(""), None);
        let label = device_label(CHROME_MAC).unwrap();
        assert_eq!(stored_device(&label), Some(label));
    }

    /// Current user agents of the browsers and systems people sign in from, and a few others.
    const AGENTS: [&str; 30] = [
        CHROME_MAC,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 EdgA/131.0.0.0",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 EdgiOS/131.0.2903.68 Mobile/15E148 Safari/605.1.15",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.19045",
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/133.0 Mobile/15E148 Safari/605.1.15",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 OPR/115.0.0.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Vivaldi/7.0.3495.18",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 YaBrowser/24.12.0.0 Safari/537.36",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/27.0 Chrome/125.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko",
        "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0)",
        "Opera/9.80 (Windows NT 6.1; WOW64) Presto/2.12.388 Version/12.18",
        "curl/8.5.0",
        "Wget/1.21.4",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.3",
        "",
    ];

    /// What the service showed when woothee read the agent.
    fn woothee_label(agent: &str) -> Option<String> {
        let found = woothee::parser::Parser::new().parse(agent)?;
        let known = |v: &str| !v.is_empty() && v != woothee::woothee::VALUE_UNKNOWN;
        let browser = known(found.name).then(|| {
            let name = match found.name {
                "SamsungBrowser" => "Samsung Internet",
                name => name,
            };
            let major = found.version.split('.').next();
            match major.filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())) {
                Some(major) => format!("{name} {major}"),
                None => name.to_owned(),
            }
        });
        let os = known(found.os).then(|| match found.os {
            "Mac OSX" => "macOS",
            windows if windows.starts_with("Windows") && !windows.starts_with("Windows Phone") => {
                "Windows"
            }
            os => os,
        });
        match (browser, os) {
            (Some(browser), Some(os)) => Some(format!("{browser} on {os}")),
            (Some(browser), None) => Some(browser),
            (None, Some(os)) => Some(os.to_owned()),
            (None, None) => None,
        }
    }

    /// The labels are the ones woothee gave, agent for agent.
    #[test]
    fn labels_are_woothees() {
        for agent in AGENTS {
            assert_eq!(device_label(agent), woothee_label(agent), "{agent:?}");
        }
    }
}
