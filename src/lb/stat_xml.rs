//! nginx-rtmp's `/stat` XML, rendered from plain structs so dashboards, `stat.xsl` and scrapers
//! written for nginx-rtmp read shardcast unchanged.
//!
//! Element names, nesting, order, which elements are optional, and even where nginx-rtmp puts
//! its `\r\n` follow `ngx_rtmp_stat_module.c` (`ngx_rtmp_stat_handler`, `_server`,
//! `_application`, `_live`, `_client`, `_bw`): scrapers written against real output sometimes
//! match on it line by line. Only the `<live>` section exists (shardcast has no VOD `<play>`),
//! and one `<server>` (it has one set of listeners).
//!
//! Units are nginx-rtmp's: `bw_*` in bits per second, `bytes_*` in bytes, `time` in
//! milliseconds, `uptime` in seconds.
//!
//! Text is escaped as nginx does for `<`, `>`, `&` and `"`, and control characters become spaces
//! (XML 1.0 forbids most of them). nginx-rtmp also blanks every non-ASCII byte for the sake of
//! XSLT; here UTF-8 is kept, since the document declares `utf-8` and stream names are UTF-8.

use std::fmt::{Display, Write};

/// Everything `/stat` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatInput {
    /// `href` of an `<?xml-stylesheet?>` line (nginx-rtmp's `rtmp_stat_stylesheet`), if any.
    pub stylesheet: Option<String>,
    /// `<nginx_version>`: scrapers show it as text; shardcast puts its own version here.
    pub nginx_version: String,
    /// `<nginx_rtmp_version>`.
    pub nginx_rtmp_version: String,
    /// `<compiler>`.
    pub compiler: String,
    /// `<built>`: build date and time.
    pub built: String,
    /// `<pid>`.
    pub pid: u32,
    /// `<uptime>`, seconds.
    pub uptime_secs: u64,
    /// `<naccepted>`: connections accepted since start.
    pub naccepted: u64,
    /// `<bw_in>`, bits/s, all streams.
    pub bw_in: u64,
    /// `<bytes_in>`, since start.
    pub bytes_in: u64,
    /// `<bw_out>`, bits/s.
    pub bw_out: u64,
    /// `<bytes_out>`, since start.
    pub bytes_out: u64,
    /// One `<application>` each, in this order (nginx-rtmp lists configured applications, with
    /// or without streams).
    pub applications: Vec<AppStat>,
}

/// An `<application>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppStat {
    /// `<name>`, e.g. `live`.
    pub name: String,
    /// Its live streams; the application's `<nclients>` is the sum of theirs.
    pub streams: Vec<StreamStatXml>,
}

/// A `<stream>` inside `<live>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamStatXml {
    /// `<name>`.
    pub name: String,
    /// `<time>`: milliseconds since the stream appeared.
    pub time_ms: u64,
    /// `<bw_in>`, bits/s.
    pub bw_in: u64,
    /// `<bytes_in>`.
    pub bytes_in: u64,
    /// `<bw_out>`, bits/s.
    pub bw_out: u64,
    /// `<bytes_out>`.
    pub bytes_out: u64,
    /// `<bw_audio>`, bits/s of incoming audio.
    pub bw_audio: u64,
    /// `<bw_video>`, bits/s of incoming video.
    pub bw_video: u64,
    /// One `<client>` each (publisher and players); may be left empty to show counts only, as
    /// nginx-rtmp does without `rtmp_stat clients`.
    pub clients: Vec<ClientXml>,
    /// `<meta>`, present once a publisher has sent codec information.
    pub meta: Option<MetaXml>,
    /// `<nclients>`: publisher plus players, whether or not `clients` lists them.
    pub nclients: u64,
    /// `<publishing/>`: a publisher is attached.
    pub publishing: bool,
    /// `<active/>`: media is flowing.
    pub active: bool,
}

/// A `<client>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientXml {
    /// `<id>`: the connection number `/control/drop?clientid=` takes.
    pub id: u64,
    /// `<address>`: the client IP as text, as `/control/drop?addr=` takes it.
    pub address: String,
    /// `<time>`: milliseconds since the connection was accepted.
    pub time_ms: u64,
    /// `<flashver>` from `connect`; omitted when empty.
    pub flashver: String,
    /// `<swfurl>` from `connect`; omitted when empty.
    pub swfurl: String,
    /// `<pageurl>` from `connect`; omitted when empty.
    pub pageurl: String,
    /// `<dropped>`: messages dropped for this client.
    pub dropped: u64,
    /// `<avsync>`: last audio minus last video timestamp, ms. `None` renders an empty element,
    /// as nginx-rtmp does with `interleave on`.
    pub avsync: Option<i64>,
    /// `<timestamp>`: the client's current RTMP timestamp, ms.
    pub timestamp: u32,
    /// `<publishing/>`: this client is the publisher.
    pub publishing: bool,
    /// `<active/>`: this client is receiving (or sending) media.
    pub active: bool,
}

/// `<meta>`: what the publisher's codec headers said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetaXml {
    /// `<video>`, always present inside `<meta>`.
    pub video: VideoMetaXml,
    /// `<audio>`, always present inside `<meta>` (possibly empty).
    pub audio: AudioMetaXml,
}

/// `<meta><video>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VideoMetaXml {
    /// `<width>`.
    pub width: u32,
    /// `<height>`.
    pub height: u32,
    /// `<frame_rate>`, whole frames per second.
    pub frame_rate: u32,
    /// `<codec>`, e.g. `H264` (see [`video_codec_name`]); omitted when `None`.
    pub codec: Option<String>,
    /// `<profile>`, e.g. `High` (see [`avc_profile_name`]); omitted when `None`.
    pub profile: Option<String>,
    /// `<compat>`: the AVC profile-compatibility byte. nginx-rtmp shows it and `level` together,
    /// when the AVC record gave a level.
    pub compat: Option<u8>,
    /// The AVC `level_idc` (31), shown as `<level>3.1</level>`.
    pub level_idc: Option<u8>,
}

/// `<meta><audio>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AudioMetaXml {
    /// `<codec>`, e.g. `AAC` (see [`audio_codec_name`]); omitted when `None`.
    pub codec: Option<String>,
    /// `<profile>`, e.g. `LC` (see [`aac_profile_name`]); omitted when `None`.
    pub profile: Option<String>,
    /// `<channels>`; omitted when `None`.
    pub channels: Option<u32>,
    /// `<sample_rate>`, Hz; omitted when `None`.
    pub sample_rate: Option<u32>,
}

/// nginx-rtmp's name for an FLV video codec id (`ngx_rtmp_get_video_codec_name`); empty for
/// ids it does not name, which nginx-rtmp then leaves out.
pub fn video_codec_name(codec_id: u8) -> &'static str {
    const NAMES: [&str; 8] = [
        "",
        "Jpeg",
        "Sorenson-H263",
        "ScreenVideo",
        "On2-VP6",
        "On2-VP6-Alpha",
        "ScreenVideo2",
        "H264",
    ];
    NAMES.get(usize::from(codec_id)).copied().unwrap_or("")
}

/// nginx-rtmp's name for an FLV sound format (`ngx_rtmp_get_audio_codec_name`); empty for ids it
/// does not name (including 0, linear PCM in platform order).
pub fn audio_codec_name(sound_format: u8) -> &'static str {
    const NAMES: [&str; 17] = [
        "",
        "ADPCM",
        "MP3",
        "LinearLE",
        "Nellymoser16",
        "Nellymoser8",
        "Nellymoser",
        "G711A",
        "G711U",
        "",
        "AAC",
        "Speex",
        "",
        "",
        "MP3-8K",
        "DeviceSpecific",
        "Uncompressed",
    ];
    NAMES.get(usize::from(sound_format)).copied().unwrap_or("")
}

/// nginx-rtmp's name for an AVC `profile_idc`: only Baseline, Main and High are named.
pub fn avc_profile_name(profile_idc: u8) -> &'static str {
    match profile_idc {
        66 => "Baseline",
        77 => "Main",
        100 => "High",
        _ => "",
    }
}

/// nginx-rtmp's name for an AAC audio object type, with HE/HEv2 told apart by SBR and PS.
pub fn aac_profile_name(object_type: u8, sbr: bool, ps: bool) -> &'static str {
    match object_type {
        1 => "Main",
        2 if ps => "HEv2",
        2 if sbr => "HE",
        2 => "LC",
        3 => "SSR",
        4 => "LTP",
        5 => "SBR",
        _ => "",
    }
}

/// The whole `/stat` document (serve it as `text/xml`).
pub fn render(input: &StatInput) -> String {
    let mut x = Xml(String::with_capacity(1024));
    x.raw("<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n");
    if let Some(href) = &input.stylesheet {
        x.raw("<?xml-stylesheet type=\"text/xsl\" href=\"");
        x.escaped(href);
        x.raw("\" ?>\r\n");
    }
    x.raw("<rtmp>\r\n");
    x.text("nginx_version", &input.nginx_version);
    x.nl();
    x.text("nginx_rtmp_version", &input.nginx_rtmp_version);
    x.nl();
    x.text("compiler", &input.compiler);
    x.nl();
    x.text("built", &input.built);
    x.nl();
    x.num("pid", input.pid);
    x.nl();
    x.num("uptime", input.uptime_secs);
    x.nl();
    x.num("naccepted", input.naccepted);
    x.nl();
    x.bw_bytes("in", input.bw_in, input.bytes_in);
    x.bw_bytes("out", input.bw_out, input.bytes_out);
    x.raw("<server>\r\n");
    for app in &input.applications {
        application(&mut x, app);
    }
    x.raw("</server>\r\n");
    x.raw("</rtmp>\r\n");
    x.0
}

fn application(x: &mut Xml, app: &AppStat) {
    x.raw("<application>\r\n");
    x.text("name", &app.name);
    x.nl();
    x.raw("<live>\r\n");
    for s in &app.streams {
        stream(x, s);
    }
    x.num(
        "nclients",
        app.streams.iter().map(|s| s.nclients).sum::<u64>(),
    );
    x.nl();
    x.raw("</live>\r\n");
    x.raw("</application>\r\n");
}

fn stream(x: &mut Xml, s: &StreamStatXml) {
    x.raw("<stream>\r\n");
    x.text("name", &s.name);
    x.nl();
    x.num("time", s.time_ms); // no line break here in nginx-rtmp either
    x.bw_bytes("in", s.bw_in, s.bytes_in);
    x.bw_bytes("out", s.bw_out, s.bytes_out);
    x.num("bw_audio", s.bw_audio);
    x.nl();
    x.num("bw_video", s.bw_video);
    x.nl();
    for c in &s.clients {
        client(x, c);
    }
    if let Some(meta) = &s.meta {
        meta_xml(x, meta);
    }
    x.num("nclients", s.nclients);
    x.nl();
    if s.publishing {
        x.raw("<publishing/>\r\n");
    }
    if s.active {
        x.raw("<active/>\r\n");
    }
    x.raw("</stream>\r\n");
}

fn client(x: &mut Xml, c: &ClientXml) {
    x.raw("<client>");
    x.num("id", c.id);
    x.text("address", &c.address);
    x.num("time", c.time_ms);
    // nginx-rtmp's order: flashver, pageurl, swfurl, each only when set.
    for (tag, value) in [
        ("flashver", &c.flashver),
        ("pageurl", &c.pageurl),
        ("swfurl", &c.swfurl),
    ] {
        if !value.is_empty() {
            x.text(tag, value);
        }
    }
    x.num("dropped", c.dropped);
    match c.avsync {
        Some(d) => x.num("avsync", d),
        None => x.raw("<avsync></avsync>"),
    }
    x.num("timestamp", c.timestamp);
    if c.publishing {
        x.raw("<publishing/>");
    }
    if c.active {
        x.raw("<active/>");
    }
    x.raw("</client>\r\n");
}

fn meta_xml(x: &mut Xml, m: &MetaXml) {
    let v = &m.video;
    x.raw("<meta><video>");
    x.num("width", v.width);
    x.num("height", v.height);
    x.num("frame_rate", v.frame_rate);
    x.opt_text("codec", &v.codec);
    x.opt_text("profile", &v.profile);
    if let Some(compat) = v.compat {
        x.num("compat", compat);
    }
    if let Some(level) = v.level_idc {
        // nginx-rtmp prints level_idc / 10 with one decimal: 31 -> 3.1, 40 -> 4.0.
        x.num("level", format_args!("{}.{}", level / 10, level % 10));
    }
    x.raw("</video><audio>");
    let a = &m.audio;
    x.opt_text("codec", &a.codec);
    x.opt_text("profile", &a.profile);
    if let Some(ch) = a.channels {
        x.num("channels", ch);
    }
    if let Some(rate) = a.sample_rate {
        x.num("sample_rate", rate);
    }
    x.raw("</audio></meta>\r\n");
}

/// The document being built.
struct Xml(String);

impl Xml {
    fn raw(&mut self, s: &str) {
        self.0.push_str(s);
    }

    fn nl(&mut self) {
        self.0.push_str("\r\n");
    }

    fn escaped(&mut self, text: &str) {
        for c in text.chars() {
            match c {
                '<' => self.0.push_str("&lt;"),
                '>' => self.0.push_str("&gt;"),
                '&' => self.0.push_str("&amp;"),
                '"' => self.0.push_str("&quot;"),
                c if c.is_control() => self.0.push(' '),
                c => self.0.push(c),
            }
        }
    }

    fn text(&mut self, tag: &str, value: &str) {
        let _ = write!(self.0, "<{tag}>");
        self.escaped(value);
        let _ = write!(self.0, "</{tag}>");
    }

    fn opt_text(&mut self, tag: &str, value: &Option<String>) {
        if let Some(v) = value {
            self.text(tag, v);
        }
    }

    fn num(&mut self, tag: &str, value: impl Display) {
        let _ = write!(self.0, "<{tag}>{value}</{tag}>");
    }

    /// nginx-rtmp's `ngx_rtmp_stat_bw` with both flags: bw first, then bytes, each on its line.
    fn bw_bytes(&mut self, name: &str, bw: u64, bytes: u64) {
        let _ = write!(
            self.0,
            "<bw_{name}>{bw}</bw_{name}>\r\n<bytes_{name}>{bytes}</bytes_{name}>\r\n"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher() -> ClientXml {
        ClientXml {
            id: 7,
            address: "192.0.2.7".into(),
            time_ms: 12000,
            flashver: "FMLE/3.0 (compatible; FMSc/1.0)".into(),
            swfurl: String::new(),
            pageurl: String::new(),
            dropped: 0,
            avsync: Some(-12),
            timestamp: 11980,
            publishing: true,
            active: true,
        }
    }

    fn player() -> ClientXml {
        ClientXml {
            id: 9,
            address: "2001:db8::9".into(),
            time_ms: 3000,
            flashver: "LNX 9,0,124,2".into(),
            swfurl: "http://example.com/player.swf".into(),
            pageurl: "http://example.com/watch".into(),
            dropped: 3,
            avsync: None,
            timestamp: 11900,
            publishing: false,
            active: true,
        }
    }

    fn input() -> StatInput {
        StatInput {
            stylesheet: None,
            nginx_version: "1.25.0".into(),
            nginx_rtmp_version: "1.1.4".into(),
            compiler: "rustc".into(),
            built: "Jan  1 2026 00:00:00".into(),
            pid: 4242,
            uptime_secs: 60,
            naccepted: 3,
            bw_in: 2_500_000,
            bytes_in: 18_000_000,
            bw_out: 2_400_000,
            bytes_out: 9_000_000,
            applications: vec![
                AppStat {
                    name: "live".into(),
                    streams: vec![StreamStatXml {
                        name: "cam1".into(),
                        time_ms: 12000,
                        bw_in: 2_500_000,
                        bytes_in: 18_000_000,
                        bw_out: 2_400_000,
                        bytes_out: 9_000_000,
                        bw_audio: 128_000,
                        bw_video: 2_372_000,
                        clients: vec![publisher(), player()],
                        meta: Some(MetaXml {
                            video: VideoMetaXml {
                                width: 1280,
                                height: 720,
                                frame_rate: 30,
                                codec: Some(video_codec_name(7).into()),
                                profile: Some(avc_profile_name(100).into()),
                                compat: Some(0),
                                level_idc: Some(31),
                            },
                            audio: AudioMetaXml {
                                codec: Some(audio_codec_name(10).into()),
                                profile: Some(aac_profile_name(2, false, false).into()),
                                channels: Some(2),
                                sample_rate: Some(44100),
                            },
                        }),
                        nclients: 2,
                        publishing: true,
                        active: true,
                    }],
                },
                AppStat {
                    name: "empty".into(),
                    streams: vec![],
                },
            ],
        }
    }

    #[test]
    fn full_document_matches_nginx_rtmp_byte_for_byte() {
        let want = concat!(
            "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n",
            "<rtmp>\r\n",
            "<nginx_version>1.25.0</nginx_version>\r\n",
            "<nginx_rtmp_version>1.1.4</nginx_rtmp_version>\r\n",
            "<compiler>rustc</compiler>\r\n",
            "<built>Jan  1 2026 00:00:00</built>\r\n",
            "<pid>4242</pid>\r\n",
            "<uptime>60</uptime>\r\n",
            "<naccepted>3</naccepted>\r\n",
            "<bw_in>2500000</bw_in>\r\n",
            "<bytes_in>18000000</bytes_in>\r\n",
            "<bw_out>2400000</bw_out>\r\n",
            "<bytes_out>9000000</bytes_out>\r\n",
            "<server>\r\n",
            "<application>\r\n",
            "<name>live</name>\r\n",
            "<live>\r\n",
            "<stream>\r\n",
            "<name>cam1</name>\r\n",
            "<time>12000</time>",
            "<bw_in>2500000</bw_in>\r\n",
            "<bytes_in>18000000</bytes_in>\r\n",
            "<bw_out>2400000</bw_out>\r\n",
            "<bytes_out>9000000</bytes_out>\r\n",
            "<bw_audio>128000</bw_audio>\r\n",
            "<bw_video>2372000</bw_video>\r\n",
            "<client><id>7</id><address>192.0.2.7</address><time>12000</time>",
            "<flashver>FMLE/3.0 (compatible; FMSc/1.0)</flashver>",
            "<dropped>0</dropped><avsync>-12</avsync><timestamp>11980</timestamp>",
            "<publishing/><active/></client>\r\n",
            "<client><id>9</id><address>2001:db8::9</address><time>3000</time>",
            "<flashver>LNX 9,0,124,2</flashver>",
            "<pageurl>http://example.com/watch</pageurl>",
            "<swfurl>http://example.com/player.swf</swfurl>",
            "<dropped>3</dropped><avsync></avsync><timestamp>11900</timestamp>",
            "<active/></client>\r\n",
            "<meta><video><width>1280</width><height>720</height><frame_rate>30</frame_rate>",
            "<codec>H264</codec><profile>High</profile><compat>0</compat><level>3.1</level>",
            "</video><audio><codec>AAC</codec><profile>LC</profile><channels>2</channels>",
            "<sample_rate>44100</sample_rate></audio></meta>\r\n",
            "<nclients>2</nclients>\r\n",
            "<publishing/>\r\n",
            "<active/>\r\n",
            "</stream>\r\n",
            "<nclients>2</nclients>\r\n",
            "</live>\r\n",
            "</application>\r\n",
            "<application>\r\n",
            "<name>empty</name>\r\n",
            "<live>\r\n",
            "<nclients>0</nclients>\r\n",
            "</live>\r\n",
            "</application>\r\n",
            "</server>\r\n",
            "</rtmp>\r\n",
        );
        let got = render(&input());
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn stylesheet_line() {
        let mut i = input();
        i.stylesheet = Some("/stat.xsl?a=1&b=\"2\"".into());
        let got = render(&i);
        assert!(got.starts_with(
            "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n\
             <?xml-stylesheet type=\"text/xsl\" href=\"/stat.xsl?a=1&amp;b=&quot;2&quot;\" ?>\r\n\
             <rtmp>\r\n"
        ));
    }

    #[test]
    fn escaping() {
        let cases = [
            ("plain", "plain"),
            ("a<b>&\"c\"", "a&lt;b&gt;&amp;&quot;c&quot;"),
            ("it's", "it's"),
            ("tab\there\r\nnul\0", "tab here  nul "),
            ("\u{7f}del", " del"),
            ("caméra 東京", "caméra 東京"),
            ("</name><evil/>", "&lt;/name&gt;&lt;evil/&gt;"),
        ];
        for (raw, want) in cases {
            let mut x = Xml(String::new());
            x.escaped(raw);
            assert_eq!(x.0, want, "{raw:?}");
        }
        let mut i = input();
        i.applications[0].streams[0].name = "a<b>&\"c\"".into();
        i.applications[0].streams[0].clients[1].pageurl = "http://x/?a=1&b=2".into();
        let got = render(&i);
        assert!(got.contains("<name>a&lt;b&gt;&amp;&quot;c&quot;</name>"));
        assert!(got.contains("<pageurl>http://x/?a=1&amp;b=2</pageurl>"));
        assert_eq!(check(&got).tags.iter().filter(|t| *t == "name").count(), 3);
    }

    /// Just enough of an XML reader to check the output: every tag closes in order, text has no
    /// raw `<` or stray `&`; returns the element names opened (including self-closing ones).
    struct Checked {
        tags: Vec<String>,
    }

    fn check(doc: &str) -> Checked {
        let body = doc
            .strip_prefix("<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n")
            .expect("declaration");
        let mut stack: Vec<String> = Vec::new();
        let mut tags = Vec::new();
        let mut rest = body;
        while let Some(open) = rest.find('<') {
            let text = &rest[..open];
            for (i, _) in text.match_indices('&') {
                let entity = &text[i..];
                assert!(
                    ["&lt;", "&gt;", "&amp;", "&quot;"]
                        .iter()
                        .any(|e| entity.starts_with(e)),
                    "stray & in {text:?}"
                );
            }
            let close = rest[open..].find('>').expect("unclosed tag") + open;
            let tag = &rest[open + 1..close];
            rest = &rest[close + 1..];
            if tag.starts_with('?') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            } else if let Some(name) = tag.strip_suffix('/') {
                tags.push(name.to_string());
            } else {
                assert!(!tag.contains(['<', '&', ' ']), "odd tag {tag:?}");
                stack.push(tag.to_string());
                tags.push(tag.to_string());
            }
        }
        assert!(stack.is_empty(), "unclosed {stack:?}");
        assert!(rest.trim().is_empty());
        Checked { tags }
    }

    fn count(doc: &str, tag: &str) -> usize {
        check(doc).tags.iter().filter(|t| *t == tag).count()
    }

    #[test]
    fn output_is_well_formed_with_the_right_counts() {
        let doc = render(&input());
        let tags = check(&doc).tags;
        assert_eq!(tags.first().map(String::as_str), Some("rtmp"));
        assert_eq!(count(&doc, "client"), 2);
        assert_eq!(count(&doc, "stream"), 1);
        assert_eq!(count(&doc, "application"), 2);
        assert_eq!(count(&doc, "server"), 1);
        // Publisher client, stream: two <publishing/>; both clients and the stream: three <active/>.
        assert_eq!(count(&doc, "publishing"), 2);
        assert_eq!(count(&doc, "active"), 3);
        // Stream, two applications' <live>.
        assert_eq!(count(&doc, "nclients"), 3);
    }

    #[test]
    fn optional_parts_are_left_out() {
        let mut i = input();
        let s = &mut i.applications[0].streams[0];
        s.clients.clear(); // counts only
        s.meta = None; // no codec info yet
        s.publishing = false;
        s.active = false;
        let doc = render(&i);
        assert_eq!(count(&doc, "client"), 0);
        assert_eq!(count(&doc, "meta"), 0);
        assert_eq!(count(&doc, "publishing"), 0);
        assert_eq!(count(&doc, "active"), 0);
        assert!(doc.contains("<nclients>2</nclients>\r\n</stream>"));

        let mut i = input();
        let m = i.applications[0].streams[0].meta.as_mut().unwrap();
        m.video = VideoMetaXml::default();
        m.audio = AudioMetaXml::default();
        let doc = render(&i);
        assert!(doc.contains(
            "<meta><video><width>0</width><height>0</height><frame_rate>0</frame_rate>\
             </video><audio></audio></meta>\r\n"
        ));
    }

    #[test]
    fn application_total_sums_streams() {
        let mut i = input();
        let mut second = i.applications[0].streams[0].clone();
        second.name = "cam2".into();
        second.nclients = 40;
        second.clients.clear();
        i.applications[0].streams.push(second);
        let doc = render(&i);
        assert!(doc.contains("<nclients>40</nclients>\r\n"));
        assert!(doc.contains("</stream>\r\n<nclients>42</nclients>\r\n</live>"));
        assert_eq!(count(&doc, "stream"), 2);
    }

    #[test]
    fn codec_and_profile_names() {
        let video = [
            (0, ""),
            (2, "Sorenson-H263"),
            (4, "On2-VP6"),
            (7, "H264"),
            (12, ""),
        ];
        for (id, want) in video {
            assert_eq!(video_codec_name(id), want, "{id}");
        }
        let audio = [
            (0, ""),
            (2, "MP3"),
            (9, ""),
            (10, "AAC"),
            (11, "Speex"),
            (16, "Uncompressed"),
            (17, ""),
        ];
        for (id, want) in audio {
            assert_eq!(audio_codec_name(id), want, "{id}");
        }
        assert_eq!(
            [66, 77, 100, 110].map(avc_profile_name),
            ["Baseline", "Main", "High", ""]
        );
        let aac = [
            (1, false, false, "Main"),
            (2, false, false, "LC"),
            (2, true, false, "HE"),
            (2, true, true, "HEv2"),
            (2, false, true, "HEv2"),
            (5, false, false, "SBR"),
            (29, false, false, ""),
        ];
        for (ot, sbr, ps, want) in aac {
            assert_eq!(aac_profile_name(ot, sbr, ps), want);
        }
    }

    #[test]
    fn level_formatting() {
        for (idc, want) in [(31, "3.1"), (40, "4.0"), (9, "0.9"), (255, "25.5")] {
            let mut i = input();
            i.applications[0].streams[0]
                .meta
                .as_mut()
                .unwrap()
                .video
                .level_idc = Some(idc);
            assert!(
                render(&i).contains(&format!("<level>{want}</level>")),
                "{idc}"
            );
        }
    }
}
