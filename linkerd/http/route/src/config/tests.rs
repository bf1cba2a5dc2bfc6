use super::*;

/// The `routes` and `grpcRoutes` of DESIGN.md section 4, verbatim.
const DESIGN_YAML: &str = r#"
routes:                             # each entry: `name` + the spec of a Gateway API HTTPRoute
  - name: api
    hostnames: [api.example.com, "*.example.com"]
    rules:
      - matches:
          - path: { type: PathPrefix, value: /api }          # Exact | PathPrefix | RegularExpression
            method: POST
            headers: [{ type: Exact, name: x-env, value: canary }]
            queryParams: [{ type: RegularExpression, name: v, value: "[0-9]+" }]
        filters:
          - type: RequestHeaderModifier
            requestHeaderModifier: { set: [{ name: x-a, value: "1" }], add: [], remove: [x-b] }
          - type: ResponseHeaderModifier
            responseHeaderModifier: { add: [{ name: x-served-by, value: proxy }] }
          - type: RequestMirror
            requestMirror: { backendRef: { name: web-canary }, percent: 10 }
        backendRefs: [{ name: web, weight: 90 }, { name: web-canary, weight: 10 }]
        timeouts: { request: 10s, backendRequest: 2s }        # GEP-1742
        retry: { codes: [502, 503, 504], attempts: 3, backoff: 25ms, maxBackoff: 250ms,
                 maxRequestBytes: 65536, budget: { ratio: 0.2, minPerSecond: 10 } }  # GEP-1731 + ext
        streamTimeouts: { responseHeaders: 5s, idle: 30s }   # extension
      - matches: [{ path: { type: PathPrefix, value: /moved } }]
        filters:
          - type: RequestRedirect
            requestRedirect: { scheme: https, hostname: new.example.com, port: 8443, statusCode: 302,
                               path: { type: ReplacePrefixMatch, replacePrefixMatch: /v2 } }
      - matches: [{ path: { type: Exact, value: /rewrite } }]
        filters:
          - type: URLRewrite
            urlRewrite: { hostname: internal, path: { type: ReplaceFullPath, replaceFullPath: /x } }
          - type: InjectFailure                   # extension: not in Gateway API
            injectFailure: { status: 503, ratio: 0.1, message: "injected", delay: 100ms, delayRatio: 0.05 }
        backendRefs: [{ name: web }]
grpcRoutes:                         # each entry: `name` + the spec of a Gateway API GRPCRoute
  - name: greeter
    rules:
      - matches: [{ method: { type: Exact, service: helloworld.Greeter, method: SayHello } }]
        backendRefs: [{ name: web-canary }]
        retry: { codes: [unavailable, cancelled], attempts: 2, backoff: 25ms }
        timeouts: { request: 5s }           # GRPCRoute v1 has no timeouts/retry: ours are extensions
"#;

fn known(name: &str) -> bool {
    name == "web" || name == "web-canary"
}

fn parse(yaml: &str) -> RoutesConfig {
    marked_yaml::from_yaml(0, yaml).expect("the YAML deserializes")
}

fn errors_of(yaml: &str) -> Vec<String> {
    parse(yaml)
        .compile(known)
        .expect_err("the config is invalid")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn design_example_deserializes_and_compiles() {
    let config = parse(DESIGN_YAML);
    assert_eq!(config.routes.len(), 1, "one HTTPRoute");
    assert_eq!(config.grpc_routes.len(), 1, "one GRPCRoute");
    let compiled = config.compile(known).expect("the design example is valid");
    let api = &compiled.http[0];
    assert_eq!(api.hostnames.len(), 2, "both hostnames");
    assert_eq!(api.rules.len(), 3, "three rules");
    let ext = &api.rules[0].policy;
    assert_eq!(
        ext.timeouts.as_ref().and_then(|t| t.request),
        Some(Duration::from_secs(10)),
        "timeouts.request parsed"
    );
    let retry = ext.retry.as_ref().expect("retry present");
    assert_eq!(retry.http_codes.len(), 3, "three retry codes");
    assert_eq!(
        retry.backoff,
        Some(Duration::from_millis(25)),
        "backoff parsed"
    );
    assert_eq!(retry.budget_min_per_second, Some(10), "budget parsed");
    assert_eq!(
        ext.stream_timeouts.as_ref().and_then(|s| s.idle),
        Some(Duration::from_secs(30)),
        "stream idle timeout parsed"
    );
    assert_eq!(api.rules[0].backends[0].weight, 90, "weights parsed");
    let grpc_retry = compiled.grpc[0].rules[0]
        .policy
        .retry
        .as_ref()
        .expect("retry");
    assert_eq!(
        grpc_retry.grpc_codes,
        vec![GrpcCode::UNAVAILABLE, GrpcCode::CANCELLED],
        "gRPC codes by name"
    );
    let table = crate::RouteTable::new(compiled.http, compiled.grpc).expect("compiles");
    assert_eq!(table.len(), 4, "four rules in the table");
}

#[test]
fn serialized_config_parses_back() {
    let config = parse(DESIGN_YAML);
    let json = serde_json_like(&config);
    let again: RoutesConfig = marked_yaml::from_yaml(0, &json).expect("serialized form parses");
    assert_eq!(config, again, "round trip keeps the model");
}

/// YAML is a superset of JSON; serialize through `Debug`-free manual JSON via serde's data model
/// would need serde_json, so this uses marked-yaml's own node model instead.
fn serde_json_like(config: &RoutesConfig) -> String {
    // Build a flow-style YAML document from the Rust values with a tiny serializer.
    flow::to_string(config)
}

mod flow {
    //! A minimal serde serializer to flow-style YAML (JSON syntax), for the round-trip test.
    use serde::ser::{self, Serialize};
    use std::fmt::Write;

    pub(super) fn to_string<T: Serialize>(v: &T) -> String {
        let mut s = Ser(String::new());
        v.serialize(&mut s).expect("serializable");
        s.0
    }

    pub(super) struct Ser(String);

    #[derive(Debug)]
    pub(super) struct Error(String);
    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Error {}
    impl ser::Error for Error {
        fn custom<T: std::fmt::Display>(msg: T) -> Self {
            Self(msg.to_string())
        }
    }

    pub(super) struct Seq<'a> {
        ser: &'a mut Ser,
        first: bool,
        close: &'static str,
    }

    impl Seq<'_> {
        fn sep(&mut self) {
            if !self.first {
                self.ser.0.push_str(", ");
            }
            self.first = false;
        }
    }

    fn quote(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    macro_rules! num {
        ($($f:ident: $t:ty),*) => {$(
            fn $f(self, v: $t) -> Result<(), Error> {
                write!(self.0, "{v}").map_err(|e| Error(e.to_string()))
            }
        )*};
    }

    impl<'a> ser::Serializer for &'a mut Ser {
        type Ok = ();
        type Error = Error;
        type SerializeSeq = Seq<'a>;
        type SerializeTuple = Seq<'a>;
        type SerializeTupleStruct = Seq<'a>;
        type SerializeTupleVariant = Seq<'a>;
        type SerializeMap = Seq<'a>;
        type SerializeStruct = Seq<'a>;
        type SerializeStructVariant = Seq<'a>;

        num!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
             serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
             serialize_f32: f32, serialize_f64: f64, serialize_bool: bool);

        fn serialize_char(self, v: char) -> Result<(), Error> {
            self.serialize_str(&v.to_string())
        }
        fn serialize_str(self, v: &str) -> Result<(), Error> {
            self.0.push_str(&quote(v));
            Ok(())
        }
        fn serialize_bytes(self, _: &[u8]) -> Result<(), Error> {
            Err(Error("bytes".into()))
        }
        fn serialize_none(self) -> Result<(), Error> {
            self.0.push_str("null");
            Ok(())
        }
        fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<(), Error> {
            v.serialize(self)
        }
        fn serialize_unit(self) -> Result<(), Error> {
            self.serialize_none()
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
            self.serialize_none()
        }
        fn serialize_unit_variant(
            self,
            _: &'static str,
            _: u32,
            v: &'static str,
        ) -> Result<(), Error> {
            self.serialize_str(v)
        }
        fn serialize_newtype_struct<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            v: &T,
        ) -> Result<(), Error> {
            v.serialize(self)
        }
        fn serialize_newtype_variant<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<(), Error> {
            Err(Error("newtype variant".into()))
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Seq<'a>, Error> {
            self.0.push('[');
            Ok(Seq {
                ser: self,
                first: true,
                close: "]",
            })
        }
        fn serialize_tuple(self, n: usize) -> Result<Seq<'a>, Error> {
            self.serialize_seq(Some(n))
        }
        fn serialize_tuple_struct(self, _: &'static str, n: usize) -> Result<Seq<'a>, Error> {
            self.serialize_seq(Some(n))
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Seq<'a>, Error> {
            Err(Error("tuple variant".into()))
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Seq<'a>, Error> {
            self.0.push('{');
            Ok(Seq {
                ser: self,
                first: true,
                close: "}",
            })
        }
        fn serialize_struct(self, _: &'static str, n: usize) -> Result<Seq<'a>, Error> {
            self.serialize_map(Some(n))
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Seq<'a>, Error> {
            Err(Error("struct variant".into()))
        }
    }

    impl ser::SerializeSeq for Seq<'_> {
        type Ok = ();
        type Error = Error;
        fn serialize_element<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Error> {
            self.sep();
            v.serialize(&mut *self.ser)
        }
        fn end(self) -> Result<(), Error> {
            self.ser.0.push_str(self.close);
            Ok(())
        }
    }
    impl ser::SerializeTuple for Seq<'_> {
        type Ok = ();
        type Error = Error;
        fn serialize_element<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Error> {
            ser::SerializeSeq::serialize_element(self, v)
        }
        fn end(self) -> Result<(), Error> {
            ser::SerializeSeq::end(self)
        }
    }
    impl ser::SerializeTupleStruct for Seq<'_> {
        type Ok = ();
        type Error = Error;
        fn serialize_field<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Error> {
            ser::SerializeSeq::serialize_element(self, v)
        }
        fn end(self) -> Result<(), Error> {
            ser::SerializeSeq::end(self)
        }
    }
    impl ser::SerializeTupleVariant for Seq<'_> {
        type Ok = ();
        type Error = Error;
        fn serialize_field<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Error> {
            ser::SerializeSeq::serialize_element(self, v)
        }
        fn end(self) -> Result<(), Error> {
            ser::SerializeSeq::end(self)
        }
    }
    impl ser::SerializeMap for Seq<'_> {
        type Ok = ();
        type Error = Error;
        fn serialize_key<T: ?Sized + Serialize>(&mut self, k: &T) -> Result<(), Error> {
            self.sep();
            k.serialize(&mut *self.ser)
        }
        fn serialize_value<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Error> {
            self.ser.0.push_str(": ");
            v.serialize(&mut *self.ser)
        }
        fn end(self) -> Result<(), Error> {
            ser::SerializeSeq::end(self)
        }
    }
    impl ser::SerializeStruct for Seq<'_> {
        type Ok = ();
        type Error = Error;
        fn serialize_field<T: ?Sized + Serialize>(
            &mut self,
            k: &'static str,
            v: &T,
        ) -> Result<(), Error> {
            self.sep();
            self.ser.0.push_str(&quote(k));
            self.ser.0.push_str(": ");
            v.serialize(&mut *self.ser)
        }
        fn end(self) -> Result<(), Error> {
            ser::SerializeSeq::end(self)
        }
    }
    impl ser::SerializeStructVariant for Seq<'_> {
        type Ok = ();
        type Error = Error;
        fn serialize_field<T: ?Sized + Serialize>(
            &mut self,
            k: &'static str,
            v: &T,
        ) -> Result<(), Error> {
            ser::SerializeStruct::serialize_field(self, k, v)
        }
        fn end(self) -> Result<(), Error> {
            ser::SerializeSeq::end(self)
        }
    }
}

#[test]
fn unknown_fields_are_rejected_but_listed_ones_are_ignored() {
    let err = marked_yaml::from_yaml::<RoutesConfig>(
        0,
        "routes: [{ name: a, rules: [{ backendRefs: [{ name: web, colour: red }] }] }]",
    )
    .expect_err("an unknown field is an error");
    assert!(
        err.to_string().contains("colour"),
        "the error names the field: {err}"
    );

    let config = parse(
        r"
routes:
  - name: a
    parentRefs: [{ name: gw }]
    rules:
      - name: first
        backendRefs: [{ name: web, port: 8080, kind: Service, group: '', namespace: default }]
",
    );
    let ignored: Vec<String> = config
        .ignored_fields()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        ignored,
        vec![
            "routes[0].parentRefs",
            "routes[0].rules[0].name",
            "routes[0].rules[0].backendRefs[0].port",
            "routes[0].rules[0].backendRefs[0].kind",
            "routes[0].rules[0].backendRefs[0].group",
            "routes[0].rules[0].backendRefs[0].namespace",
        ],
        "ignored fields are listed for a warning"
    );
    config
        .compile(known)
        .expect("a pasted HTTPRoute spec loads");
}

#[test]
fn validation_errors_name_the_field_path() {
    let errors = errors_of(
        r#"
routes:
  - name: a
    rules:
      - backendRefs: [{ name: web }]
      - matches:
          - path: { type: RegularExpression, value: "(" }
            headers: [{ name: "bad header", value: x }]
        backendRefs: [{ name: nope }]
        timeouts: { request: 10 seconds }
      - matches: [{ path: { type: Exact, value: /x } }]
        filters:
          - type: RequestRedirect
            requestRedirect: { statusCode: 999, path: { type: ReplacePrefixMatch, replacePrefixMatch: /y } }
      - filters:
          - type: RequestRedirect
            requestRedirect: { statusCode: 200 }
          - type: URLRewrite
            urlRewrite: { hostname: x }
"#,
    );
    let expect = [
        "routes[0].rules[1].matches[0].path.value: invalid regular expression",
        "routes[0].rules[1].matches[0].headers[0].name: invalid header name",
        "routes[0].rules[1].backendRefs[0].name: unknown backend \"nope\"",
        "routes[0].rules[1].timeouts.request: invalid duration",
        "routes[0].rules[2].filters[0].requestRedirect.statusCode: redirect status 999 must be",
        "routes[0].rules[2].filters[0].requestRedirect.path.replacePrefixMatch: ReplacePrefixMatch needs",
        "routes[0].rules[3].filters[0].requestRedirect.statusCode: redirect status 200",
        "routes[0].rules[3].filters[1]: RequestRedirect and URLRewrite cannot be combined",
    ];
    assert_exactly(&errors, &expect);
}

#[test]
fn gateway_api_bounds_are_checked() {
    let errors = errors_of(
        r#"
routes:
  - name: a
    rules:
      - backendRefs: [{ name: web, weight: 1000001 }]
        timeouts: { request: 1s, backendRequest: 2s }
        retry: { codes: [200, 503, 600] }
      - filters:
          - type: RequestHeaderModifier
            requestHeaderModifier: { set: [{ name: x-a, value: "1" }] }
          - type: RequestHeaderModifier
            requestHeaderModifier: { set: [{ name: x-b, value: "1" }] }
          - type: ResponseHeaderModifier
            responseHeaderModifier: { add: [{ name: x-c, value: "1" }] }
        backendRefs: [{ name: web, weight: 1000000 }]
        timeouts: { request: 0s, backendRequest: 2s }
"#,
    );
    let expect = [
        "routes[0].rules[0].backendRefs[0].weight: weight 1000001 is over the maximum, 1000000",
        "routes[0].rules[0].retry.codes[0]: expected an HTTP status code (400-599)",
        "routes[0].rules[0].retry.codes[2]: expected an HTTP status code (400-599)",
        "routes[0].rules[1].filters[1]: RequestHeaderModifier cannot be repeated in one rule",
        // GEP-1742; not with `request: 0s` (off), as in the second rule.
        "routes[0].rules[0].timeouts.backendRequest: backendRequest (2s) cannot be longer than request (1s)",
    ];
    assert_exactly(&errors, &expect);
}

#[test]
fn header_modifiers_keep_framing_and_hop_by_hop_headers() {
    let errors = errors_of(
        r#"
routes:
  - name: a
    rules:
      - filters:
          - type: RequestHeaderModifier
            requestHeaderModifier:
              set: [{ name: Content-Length, value: "5" }, { name: x-a, value: "1" }, { name: X-A, value: "2" }]
              add: [{ name: upgrade, value: websocket }, { name: keep-alive, value: "1" }]
              remove: [transfer-encoding]
          - type: ResponseHeaderModifier
            responseHeaderModifier: { set: [{ name: connection, value: close }, { name: host, value: h }] }
        backendRefs: [{ name: web }]
      - filters:
          - type: ResponseHeaderModifier
            responseHeaderModifier:
              set: [{ name: x-b, value: "1" }]
              add: [{ name: X-B, value: "2" }]
              remove: [x-c, x-b, X-C]
        backendRefs: [{ name: web }]
"#,
    );
    let expect = [
        "routes[0].rules[0].filters[0].requestHeaderModifier.set[0].name: header content-length cannot be modified",
        "routes[0].rules[0].filters[0].requestHeaderModifier.set[2].name: header x-a is named twice",
        "routes[0].rules[1].filters[0].responseHeaderModifier.add[0].name: header x-b is named twice",
        "routes[0].rules[1].filters[0].responseHeaderModifier.remove[1]: header x-b is named twice",
        "routes[0].rules[1].filters[0].responseHeaderModifier.remove[2]: header x-c is named twice",
        "routes[0].rules[0].filters[0].requestHeaderModifier.add[0].name: header upgrade cannot be modified",
        "routes[0].rules[0].filters[0].requestHeaderModifier.add[1].name: header keep-alive cannot be modified",
        "routes[0].rules[0].filters[0].requestHeaderModifier.remove[0]: header transfer-encoding cannot be modified",
        "routes[0].rules[0].filters[1].responseHeaderModifier.set[0].name: header connection cannot be modified",
    ];
    assert_exactly(&errors, &expect);
}

#[test]
fn paths_follow_the_gateway_api_rules() {
    for bad in [
        "/foo/../bar",
        "/foo/./bar",
        "/foo/..",
        "/foo/.",
        "/foo%2Fbar",
        "/foo%2fbar",
    ] {
        for kind in ["Exact", "PathPrefix"] {
            let errors = errors_of(&format!(
                r#"
routes:
  - name: a
    rules:
      - matches: [{{ path: {{ type: {kind}, value: "{bad}" }} }}]
        backendRefs: [{{ name: web }}]
"#
            ));
            assert_exactly(&errors, &["routes[0].rules[0].matches[0].path.value: path"]);
        }
        // Path modifiers too: what they write is what the upstream gets.
        let errors = errors_of(&format!(
            r#"
routes:
  - name: a
    rules:
      - filters:
          - type: URLRewrite
            urlRewrite: {{ path: {{ type: ReplaceFullPath, replaceFullPath: "{bad}" }} }}
        backendRefs: [{{ name: web }}]
      - filters:
          - type: RequestRedirect
            requestRedirect: {{ path: {{ type: ReplacePrefixMatch, replacePrefixMatch: "{bad}" }} }}
"#
        ));
        assert_exactly(
            &errors,
            &[
                "routes[0].rules[0].filters[0].urlRewrite.path.replaceFullPath: path",
                "routes[0].rules[1].filters[0].requestRedirect.path.replacePrefixMatch: path",
            ],
        );
    }
    let errors = errors_of(
        r#"
routes:
  - name: a
    rules:
      - filters:
          - type: URLRewrite
            urlRewrite: { path: { type: ReplaceFullPath, replaceFullPath: "/x?y=1" } }
        backendRefs: [{ name: web }]
"#,
    );
    assert_exactly(
        &errors,
        &["routes[0].rules[0].filters[0].urlRewrite.path.replaceFullPath: path"],
    );
    // Dots inside a segment are fine.
    let ok = parse(
        r#"
routes:
  - name: a
    rules:
      - matches: [{ path: { type: PathPrefix, value: "/v1.2/..data/.well-known" } }]
        backendRefs: [{ name: web }]
"#,
    );
    assert!(ok.compile(known).is_ok());
}

#[test]
fn grpc_validation() {
    let errors = errors_of(
        r"
grpcRoutes:
  - name: g
    rules:
      - matches: [{ method: { type: RegularExpression, service: '(' } }]
        filters:
          - type: InjectFailure
            injectFailure: { status: 503 }
          - type: RequestRedirect
            requestRedirect: {}
        retry: { codes: [bogus, ok, 0, unavailable] }
      - filters:
          - type: InjectFailure
            injectFailure: { grpcStatus: 14, message: 'injected dénié' }
",
    );
    for e in [
        "grpcRoutes[0].rules[0].matches[0].method.service: invalid regular expression",
        "grpcRoutes[0].rules[0].filters[0].injectFailure.status:",
        "grpcRoutes[0].rules[0].filters[1].type:",
        "grpcRoutes[0].rules[0].retry.codes[0]:",
        // Retrying `ok` would send every successful call again.
        "grpcRoutes[0].rules[0].retry.codes[1]: ok is not a failure",
        "grpcRoutes[0].rules[0].retry.codes[2]: ok is not a failure",
        "grpcRoutes[0].rules[1].filters[0].injectFailure.message: the message goes in a header",
    ] {
        assert!(
            errors.iter().any(|got| got.starts_with(e)),
            "expected an error starting with {e:?}, got {errors:#?}"
        );
    }
    assert!(
        !errors.iter().any(|got| got.contains("codes[3]")),
        "unavailable is fine: {errors:#?}"
    );
}

#[test]
fn durations_follow_gateway_api_syntax() {
    for (s, d) in [
        ("500ms", Duration::from_millis(500)),
        ("10s", Duration::from_secs(10)),
        ("1m30s", Duration::from_secs(90)),
        ("1h", Duration::from_secs(3600)),
        ("0s", Duration::ZERO),
        ("1h1m1s1ms", Duration::from_millis(3_661_001)),
    ] {
        assert_eq!(parse_duration(s).ok(), Some(d), "{s} parses");
    }
    for s in [
        "",
        "10",
        "s",
        "1.5s",
        "123456s",
        "1h1m1s1ms1ms",
        "-1s",
        "1d",
    ] {
        assert!(parse_duration(s).is_err(), "{s:?} is rejected");
    }
}

#[test]
fn gateway_api_rule_rules_are_checked() {
    let errors = errors_of(
        r#"
routes:
  - name: a
    hostnames: ["10.0.0.1", "API.example.com", "a.example.com.", "*.ok.example.com"]
    rules:
      - matches: [{ path: { value: /a } }, { path: { value: /b } }]
        filters:
          - type: URLRewrite
            urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /x } }
        backendRefs: [{ name: web }]
      - matches: [{ path: { value: /c } }]
        filters:
          - type: RequestRedirect
            requestRedirect: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /y } }
        backendRefs: [{ name: web }]
      - filters:
          - type: RequestMirror
            requestMirror: { backendRef: { name: web, weight: 5 } }
          - type: URLRewrite
            urlRewrite: { hostname: "192.168.0.1" }
        backendRefs: [{ name: web }]
      - matches: [{ path: { value: /d } }]
        filters:
          - type: URLRewrite
            urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /z } }
        backendRefs: [{ name: web }]
grpcRoutes:
  - name: g
    rules:
      - filters:
          - type: URLRewrite
            urlRewrite: { hostname: x }
        backendRefs: [{ name: web }]
"#,
    );
    let expect = [
        "routes[0].hostnames[0]: invalid hostname \"10.0.0.1\": IP addresses are not allowed",
        "routes[0].hostnames[1]: invalid hostname \"API.example.com\": expected lower-case",
        "routes[0].hostnames[2]: invalid hostname \"a.example.com.\": expected lower-case",
        "routes[0].rules[0].filters[0].urlRewrite.path.replacePrefixMatch: ReplacePrefixMatch needs exactly one match",
        "routes[0].rules[1].filters[0].requestRedirect: RequestRedirect cannot be combined with backendRefs",
        "routes[0].rules[2].filters[0].requestMirror.backendRef.weight: unknown field `weight`",
        "routes[0].rules[2].filters[1].urlRewrite.hostname: invalid hostname \"192.168.0.1\": IP addresses",
        "grpcRoutes[0].rules[0].filters[0].type: URLRewrite is not supported in grpcRoutes",
    ];
    assert_exactly(&errors, &expect);
}

#[test]
fn a_mirror_reference_takes_the_ignored_fields_of_a_backend_reference() {
    let config = parse(
        r"
routes:
  - name: a
    rules:
      - filters:
          - type: RequestMirror
            requestMirror: { backendRef: { name: web, port: 80, kind: Service } }
        backendRefs: [{ name: web }]
",
    );
    let ignored: Vec<String> = config
        .ignored_fields()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        ignored,
        vec![
            "routes[0].rules[0].filters[0].requestMirror.backendRef.port",
            "routes[0].rules[0].filters[0].requestMirror.backendRef.kind",
        ]
    );
    config.compile(known).expect("the mirror loads");
}

/// Asserts that `errors` are exactly one error starting with each of `expect`.
fn assert_exactly(errors: &[String], expect: &[&str]) {
    for e in expect {
        assert!(
            errors.iter().any(|got| got.starts_with(e)),
            "expected an error starting with {e:?}, got {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expect.len(), "no other errors: {errors:#?}");
}
