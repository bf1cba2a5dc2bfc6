//! Property test: any config the model serializes parses back to the same model.

use linkerd_app::config::{
    AccessLogConfig, BackendConfig, BackendProtocol, Config, GwDuration, ServerConfig,
    format_duration,
};
use linkerd_http_route::config::{
    BackendRefConfig, HttpMatchConfig, HttpRouteConfig, HttpRuleConfig, PathMatchConfig,
    PathMatchType, TimeoutsConfig,
};
use proptest::prelude::*;
use std::{path::Path, time::Duration};

fn duration() -> impl Strategy<Value = GwDuration> {
    (0u64..3_600_000).prop_map(|ms| GwDuration(Duration::from_millis(ms)))
}

fn backend(i: usize) -> impl Strategy<Value = BackendConfig> {
    (
        any::<bool>(),
        proptest::collection::vec((1u8..=254, 1u16..=65535), 0..4),
        proptest::option::of(duration()),
        proptest::option::of(duration()),
        proptest::option::of(1usize..10_000),
    )
        .prop_map(move |(h2, eps, connect, fail_fast, queue)| {
            let mut b: BackendConfig = serde_json::from_value(serde_json::json!({
                "name": format!("backend-{i}"),
                "endpoints": [],
            }))
            .unwrap();
            b.protocol = if h2 {
                BackendProtocol::Http2
            } else {
                BackendProtocol::Http1
            };
            b.endpoints = Some(
                eps.into_iter()
                    .map(|(o, p)| format!("127.0.0.{o}:{p}").parse().unwrap())
                    .collect(),
            );
            b.connect_timeout = connect;
            b.fail_fast = fail_fast;
            b.queue = queue;
            b
        })
}

fn route(i: usize, backends: usize) -> impl Strategy<Value = HttpRouteConfig> {
    proptest::collection::vec(
        (
            proptest::option::of(("[a-z]{1,8}", any::<bool>())),
            0..backends,
            1u32..100,
            proptest::option::of(1u64..100_000),
        ),
        1..4,
    )
    .prop_map(move |rules| HttpRouteConfig {
        name: format!("route-{i}"),
        hostnames: vec![format!("host{i}.example.com")],
        rules: rules
            .into_iter()
            .map(|(path, b, weight, timeout)| {
                let mut rule = HttpRuleConfig::default();
                if let Some((p, exact)) = path {
                    let m = HttpMatchConfig {
                        path: Some(PathMatchConfig {
                            kind: if exact {
                                PathMatchType::Exact
                            } else {
                                PathMatchType::PathPrefix
                            },
                            value: format!("/{p}"),
                        }),
                        ..Default::default()
                    };
                    rule.matches = vec![m];
                }
                rule.backend_refs = vec![BackendRefConfig {
                    name: format!("backend-{b}"),
                    weight: Some(weight),
                    ..Default::default()
                }];
                rule.timeouts = timeout.map(|ms| TimeoutsConfig {
                    request: Some(format_duration(Duration::from_millis(ms))),
                    backend_request: None,
                });
                rule
            })
            .collect(),
        ..Default::default()
    })
}

fn config() -> impl Strategy<Value = Config> {
    (1usize..4).prop_flat_map(|n| {
        (
            (0..n).map(backend).collect::<Vec<_>>(),
            proptest::collection::vec(Just(()), 0..3),
            duration(),
            prop_oneof![
                Just("json"),
                Just("apache"),
                Just("%method% %uri% %status%")
            ],
        )
            .prop_flat_map(move |(backends, routes, hrt, format)| {
                let n_routes = routes.len();
                (
                    Just(backends),
                    (0..n_routes).map(|i| route(i, n)).collect::<Vec<_>>(),
                    Just(hrt),
                    Just(format),
                )
            })
            .prop_map(|(backends, routes, hrt, format)| {
                let server = ServerConfig {
                    header_read_timeout: hrt,
                    ..Default::default()
                };
                Config {
                    listen: "127.0.0.1:4140".parse().unwrap(),
                    admin: "127.0.0.1:4191".parse().unwrap(),
                    access_log: AccessLogConfig {
                        format: format.to_owned(),
                        output: "stdout".to_owned(),
                    },
                    server,
                    backends,
                    routes,
                    grpc_routes: vec![],
                    warnings: vec![],
                }
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn serialized_config_parses_back(config in config()) {
        let text = serde_json::to_string_pretty(&config.to_document()).unwrap();
        let back = Config::from_yaml(Path::new("roundtrip.yaml"), &text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        prop_assert_eq!(back, config);
    }
}
