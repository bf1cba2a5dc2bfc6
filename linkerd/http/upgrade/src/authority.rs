//! Request-target checks and authority normalisation (RFC 9112 sections 3.2 and 3.2.2).

use http::{
    HeaderValue, Method, Request, Uri, Version, header,
    uri::{Authority, PathAndQuery, Scheme},
};

/// Marks a request that arrived in HTTP/1 absolute-form (request extension).
///
/// Written by [`Upgrade`](crate::Upgrade) (and by [`OrigProtoDowngrade`](crate::OrigProtoDowngrade)
/// when the original request was absolute-form); read by [`to_origin_form`], which leaves
/// such requests in absolute-form, and by [`OrigProtoUpgrade`](crate::OrigProtoUpgrade),
/// which records it in `l5d-orig-proto`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AbsoluteForm;

/// Why a request target cannot be proxied (the `<why>` of `bad request: <why>`).
pub(crate) type Why = &'static str;

/// Checks the request target and makes the URI authority and `Host` agree.
///
/// - `CONNECT` (without `:protocol`) needs an authority-form target with a port (RFC 9110
///   section 9.3.6); any other method with an authority-form target is rejected (RFC 9112
///   section 3.2.3), as is `*` on anything but `OPTIONS` (section 3.2.4).
/// - An absolute-form target keeps its authority; `Host` is replaced by it (section 3.2.2)
///   and the request is marked [`AbsoluteForm`] when it is HTTP/1.
/// - An origin-form target gets `http` and the `Host` authority, so every later layer (the
///   router, an HTTP/2 client) sees one authority. An HTTP/1.1 request without exactly one
///   valid `Host` is rejected (section 3.2), as is an HTTP/2 request with neither `:authority`
///   nor `Host`; HTTP/1.0 may omit it (RFC 1945 has no `Host`).
/// - A target URI with userinfo (`user:pw@host`) is rejected (RFC 9110 section 4.2.4: a
///   recipient should treat it as an error; RFC 9113 section 8.3.1 forbids it in
///   `:authority`).
/// - The path's dot segments (`.` and `..`, also percent-encoded as `%2e`) are removed (RFC
///   3986 section 5.2.4), so the router matches the path an upstream resolves, and that path
///   is the one forwarded: `/public/../admin` is `/admin`.
pub(crate) fn normalize<B>(req: &mut Request<B>, extended_connect: bool) -> Result<(), Why> {
    normalize_target(req, extended_connect)?;
    remove_dot_segments(req);
    Ok(())
}

fn normalize_target<B>(req: &mut Request<B>, extended_connect: bool) -> Result<(), Why> {
    // `Transfer-Encoding` is hop-by-hop and goes no further: a coding other than `chunked`
    // (which hyper has undone) would reach the backend still applied and undeclared, a body
    // of another meaning (RFC 9112 section 6.1: a coding the proxy does not understand).
    // (HTTP/2 has no `Transfer-Encoding`: hyper refuses such a request as malformed.)
    if is_http1(req.version())
        && req
            .headers()
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .any(|v| {
                v.to_str().map_or(true, |v| {
                    v.split(',')
                        .any(|c| !c.trim().eq_ignore_ascii_case("chunked"))
                })
            })
    {
        return Err("unsupported transfer coding");
    }
    let uri = req.uri();
    let is_connect = req.method() == Method::CONNECT && !extended_connect;
    let authority_form =
        uri.scheme().is_none() && uri.authority().is_some() && uri.path_and_query().is_none();

    if is_connect {
        let Some(authority) = uri.authority().filter(|_| authority_form) else {
            return Err("CONNECT target must be authority-form (host:port)");
        };
        if authority.port_u16().is_none() {
            return Err("CONNECT target must have a port");
        }
        if authority.as_str().contains('@') {
            return Err("CONNECT target must not carry userinfo");
        }
        let authority = authority.clone();
        return set_host(req, &authority);
    }
    if authority_form {
        return Err("authority-form target is only valid for CONNECT");
    }
    if uri.path() == "*" && uri.scheme().is_none() && req.method() != Method::OPTIONS {
        return Err("asterisk-form target is only valid for OPTIONS");
    }

    if let Some(authority) = uri.authority().cloned() {
        if authority.as_str().contains('@') {
            return Err("userinfo in the target");
        }
        if is_http1(req.version()) {
            req.extensions_mut().insert(AbsoluteForm);
        }
        return set_host(req, &authority);
    }

    // Origin-form (or an HTTP/2 request without `:authority`).
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err("multiple host headers"),
        (Some(host), None) if !host.is_empty() => host,
        // HTTP/2 has `:authority` for it (RFC 9113 section 8.3.1): with neither, the
        // request names no host to route by or to send an HTTP/1.1 upstream.
        _ if req.version() == Version::HTTP_11 || req.version() == Version::HTTP_2 => {
            return Err("missing host");
        }
        _ => return Ok(()),
    };
    // The authority shares the header's bytes (a reference count, no copy), so the clones a
    // retry or a mirror takes later are reference counts too: a copied authority is a
    // plain vector, which its first clone turns into a shared one with an allocation.
    let authority = match Authority::from_maybe_shared(bytes::Bytes::from_owner(host.clone())) {
        Ok(a) if !a.as_str().contains('@') => a,
        _ => return Err("invalid host"),
    };
    if uri.path() == "*" {
        // `*` cannot be combined with an authority in a URI; the router uses `Host`.
        return Ok(());
    }
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| "invalid host")?;
    Ok(())
}

/// Removes the dot segments of `req`'s path (RFC 3986 section 5.2.4), with `%2e` read as `.`
/// (an unreserved character's encoding is equivalent to it, section 2.3); the query stays.
fn remove_dot_segments<B>(req: &mut Request<B>) {
    let path = req.uri().path().as_bytes();
    // Most paths have no segment starting with `.` or `%`: one pass settles it. (A path
    // that does not start with `/`, `*` or an HTTP/2 peer's oddity, is left as it is.)
    if path.first() != Some(&b'/')
        || !path
            .windows(2)
            .any(|w| w[0] == b'/' && (w[1] == b'.' || w[1] == b'%'))
        || !path.split(|&b| b == b'/').any(|seg| dots(seg).is_some())
    {
        return;
    }
    let mut kept: Vec<&[u8]> = Vec::new();
    // Whether the result ends with a slash (its last segment was a dot segment).
    let mut slash = false;
    for seg in path[1..].split(|&b| b == b'/') {
        match dots(seg) {
            Some(1) => slash = true,
            Some(_) => {
                kept.pop();
                slash = true;
            }
            None => {
                kept.push(seg);
                slash = false;
            }
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for seg in &kept {
        out.push(b'/');
        out.extend_from_slice(seg);
    }
    if slash || kept.is_empty() {
        out.push(b'/');
    }
    if let Some(query) = req.uri().query() {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    // The bytes came from a valid path and query, less some segments: still valid.
    let Ok(pq) = PathAndQuery::from_maybe_shared(bytes::Bytes::from(out)) else {
        return;
    };
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.path_and_query = Some(pq);
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

/// 1 for a `.` segment, 2 for `..`, with dots also written `%2e` / `%2E`; `None` otherwise.
fn dots(seg: &[u8]) -> Option<u8> {
    let mut n = 0u8;
    let mut rest = seg;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', e, tail @ ..] if e.eq_ignore_ascii_case(&b'e') => tail,
            _ => return None,
        };
        n += 1;
        if n > 2 {
            return None;
        }
    }
    (n > 0).then_some(n)
}

/// Sets `Host` to `authority` (which has no userinfo: targets with one are refused first)
/// unless it already says so.
fn set_host<B>(req: &mut Request<B>, authority: &Authority) -> Result<(), Why> {
    let same = {
        let mut hosts = req.headers().get_all(header::HOST).iter();
        matches!((hosts.next(), hosts.next()), (Some(h), None) if h.as_bytes() == authority.as_str().as_bytes())
    };
    if !same {
        // The header shares the authority's bytes (see `SharedAuthority`).
        let value = HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(SharedAuthority(
            authority.clone(),
        )));
        req.headers_mut()
            .insert(header::HOST, value.map_err(|_| "invalid authority")?);
    }
    Ok(())
}

/// An authority as the bytes of a `Host` value. Cloning an `Authority` is a reference count,
/// so the header built over it shares the URI's bytes, and so do its clones (the retry
/// layer takes one per retryable request); a copied value is a plain vector, which its
/// first clone turns into a shared buffer with an allocation.
struct SharedAuthority(Authority);

impl AsRef<[u8]> for SharedAuthority {
    fn as_ref(&self) -> &[u8] {
        self.0.as_str().as_bytes()
    }
}

fn is_http1(version: Version) -> bool {
    version == Version::HTTP_11 || version == Version::HTTP_10 || version == Version::HTTP_09
}

/// Rewrites an absolute-form URI to origin-form, for sending over an HTTP/1 connection that
/// is already bound to the target (as `hyper::client::conn::http1` sends the URI it is given).
///
/// Leaves the URI alone for `CONNECT` (authority-form) and for requests marked
/// [`AbsoluteForm`] (the client used absolute-form, so the next hop gets it too).
/// `Host` already carries the authority (the [`Upgrade`](crate::Upgrade) service set it).
pub fn to_origin_form<B>(req: &mut Request<B>) {
    if req.method() == Method::CONNECT
        || req.extensions().get::<AbsoluteForm>().is_some()
        || req.uri().scheme().is_none()
    {
        return;
    }
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, version: Version, host: &[&str]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri).version(version);
        for h in host {
            b = b.header("host", *h);
        }
        b.body(()).unwrap()
    }

    /// Method, target, version, `Host` headers, and the URI and `Host` after (or the error).
    type Case = (
        &'static str,
        &'static str,
        Version,
        &'static [&'static str],
        Result<(&'static str, &'static str), Why>,
    );

    #[test]
    fn transfer_codings_other_than_chunked_are_refused() {
        for (te, ok) in [
            ("chunked", true),
            ("Chunked", true),
            ("gzip, chunked", false),
            ("deflate,chunked", false),
        ] {
            let mut r = req("POST", "/", Version::HTTP_11, &["ex.com"]);
            r.headers_mut()
                .insert("transfer-encoding", te.parse().unwrap());
            let got = normalize(&mut r, false);
            assert_eq!(got.is_ok(), ok, "{te}: {got:?}");
            if !ok {
                assert_eq!(got, Err("unsupported transfer coding"));
            }
        }
    }

    #[test]
    fn table_of_outcomes() {
        use Version as V;
        let cases: &[Case] = &[
            (
                "GET",
                "/a?b",
                V::HTTP_11,
                &["ex.com"],
                Ok(("http://ex.com/a?b", "ex.com")),
            ),
            (
                "GET",
                "http://ex.com:8080/a",
                V::HTTP_11,
                &["other"],
                Ok(("http://ex.com:8080/a", "ex.com:8080")),
            ),
            (
                "GET",
                "http://u:p@ex.com/a",
                V::HTTP_11,
                &[],
                Err("userinfo in the target"),
            ),
            (
                "GET",
                "http://u@ex.com/a",
                V::HTTP_2,
                &[],
                Err("userinfo in the target"),
            ),
            (
                "CONNECT",
                "ex.com:443",
                V::HTTP_11,
                &["ex.com:443"],
                Ok(("ex.com:443", "ex.com:443")),
            ),
            (
                "CONNECT",
                "ex.com",
                V::HTTP_11,
                &[],
                Err("CONNECT target must have a port"),
            ),
            (
                "CONNECT",
                "/path",
                V::HTTP_11,
                &["a"],
                Err("CONNECT target must be authority-form (host:port)"),
            ),
            (
                "CONNECT",
                "http://ex.com/",
                V::HTTP_11,
                &["a"],
                Err("CONNECT target must be authority-form (host:port)"),
            ),
            (
                "GET",
                "ex.com:80",
                V::HTTP_11,
                &["ex.com"],
                Err("authority-form target is only valid for CONNECT"),
            ),
            (
                "GET",
                "*",
                V::HTTP_11,
                &["ex.com"],
                Err("asterisk-form target is only valid for OPTIONS"),
            ),
            ("OPTIONS", "*", V::HTTP_11, &["ex.com"], Ok(("*", "ex.com"))),
            ("GET", "/", V::HTTP_11, &[], Err("missing host")),
            ("GET", "/", V::HTTP_11, &[""], Err("missing host")),
            (
                "GET",
                "/",
                V::HTTP_11,
                &["a", "b"],
                Err("multiple host headers"),
            ),
            ("GET", "/", V::HTTP_11, &["a b"], Err("invalid host")),
            ("GET", "/", V::HTTP_11, &["u@a"], Err("invalid host")),
            ("GET", "/x", V::HTTP_10, &[], Ok(("/x", ""))),
            ("GET", "/x", V::HTTP_2, &[], Err("missing host")),
            (
                "GET",
                "/x",
                V::HTTP_2,
                &["ex.com"],
                Ok(("http://ex.com/x", "ex.com")),
            ),
        ];
        for (method, uri, version, host, want) in cases {
            let mut r = req(method, uri, *version, host);
            let got = normalize(&mut r, false).map(|()| {
                (
                    r.uri().to_string(),
                    r.headers()
                        .get("host")
                        .map(|h| h.to_str().unwrap().to_owned())
                        .unwrap_or_default(),
                )
            });
            let want = want.map(|(u, h)| (u.to_owned(), h.to_owned()));
            assert_eq!(got, want, "{method} {uri} {version:?} host={host:?}");
        }
    }

    #[test]
    fn dot_segments_are_removed_from_the_path() {
        let cases = [
            ("/a/b", "/a/b"),
            ("/pkg.Svc/Method", "/pkg.Svc/Method"),
            ("/a/.hidden/..x/x..", "/a/.hidden/..x/x.."),
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E./admin?q=/../x", "/admin?q=/../x"),
            ("/public/./../admin", "/admin"),
            ("/a/./b", "/a/b"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/..", "/"),
            ("/../../a", "/a"),
            ("/.", "/"),
            ("/a//../b", "/a/b"),
            ("/a/b/../../..?x", "/?x"),
            ("/a/...", "/a/..."),
            ("/a/%2e%2e%2e", "/a/%2e%2e%2e"),
            ("/a/%2f/../b", "/a/b"),
        ];
        for (path, want) in cases {
            let mut r = req("GET", path, Version::HTTP_11, &["ex.com"]);
            normalize(&mut r, false).unwrap();
            let got = r.uri().path_and_query().map(|p| p.as_str().to_owned());
            assert_eq!(got.as_deref(), Some(want), "{path}");
        }
    }

    #[test]
    fn absolute_form_is_marked_for_http1_only() {
        let mut r = req("GET", "http://ex.com/", Version::HTTP_11, &[]);
        normalize(&mut r, false).unwrap();
        assert!(
            r.extensions().get::<AbsoluteForm>().is_some(),
            "HTTP/1 absolute-form is marked"
        );
        let mut r = req("GET", "http://ex.com/", Version::HTTP_2, &[]);
        normalize(&mut r, false).unwrap();
        assert!(
            r.extensions().get::<AbsoluteForm>().is_none(),
            "HTTP/2 is always absolute: not marked"
        );
        assert_eq!(r.headers()["host"], "ex.com", "HTTP/2 gets a Host too");
    }

    #[test]
    fn an_origin_form_authority_shares_the_host_header_bytes() {
        let mut r = req("GET", "/a", Version::HTTP_11, &[]);
        r.headers_mut().insert(
            header::HOST,
            HeaderValue::from_maybe_shared(bytes::Bytes::from_static(b"ex.com:8080")).unwrap(),
        );
        normalize(&mut r, false).unwrap();
        let host = r.headers()[header::HOST].as_bytes().as_ptr();
        let authority = r.uri().authority().expect("authority set");
        assert_eq!(authority.as_str(), "ex.com:8080");
        assert_eq!(
            authority.as_str().as_ptr(),
            host,
            "no copy of the header's bytes"
        );
        let copy = r.uri().clone();
        assert_eq!(
            copy.authority().unwrap().as_str().as_ptr(),
            host,
            "clones share too"
        );
    }

    #[test]
    fn an_http2_host_header_shares_the_authority_bytes() {
        let mut r = req("GET", "http://ex.com:8080/a", Version::HTTP_2, &[]);
        normalize(&mut r, false).unwrap();
        let authority = r.uri().authority().unwrap().as_str().as_ptr();
        let host = &r.headers()[header::HOST];
        assert_eq!(host, "ex.com:8080");
        assert_eq!(
            host.as_bytes().as_ptr(),
            authority,
            "no copy of the authority"
        );
        let copy = r.headers().clone();
        assert_eq!(
            copy[header::HOST].as_bytes().as_ptr(),
            authority,
            "clones share too"
        );
    }

    #[test]
    fn origin_form_round_trip() {
        let mut r = req("GET", "/a?b", Version::HTTP_11, &["ex.com"]);
        normalize(&mut r, false).unwrap();
        to_origin_form(&mut r);
        assert_eq!(r.uri(), "/a?b", "origin-form is restored");
        let mut r = req("GET", "http://ex.com/a", Version::HTTP_11, &[]);
        normalize(&mut r, false).unwrap();
        to_origin_form(&mut r);
        assert_eq!(r.uri(), "http://ex.com/a", "absolute-form is kept");
    }
}
