//! OPS-2 through the API: the OpenAPI document and the interactive page, with no CDN.

use crate::helpers::*;

fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[actix_web::test]
async fn the_openapi_document_is_served_and_describes_every_route() {
    let app = spawn_app().await;
    let r = app.call("GET", "/openapi.json", None, None).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(header(&r, "content-type").starts_with("application/json"));
    let doc: serde_json::Value = serde_json::from_str(&r.raw).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for route in http_api::routes::table() {
        let op = &doc["paths"][route.path][route.method.as_str().to_lowercase()];
        assert!(
            op.is_object(),
            "{} {} is not documented",
            route.method,
            route.path
        );
    }
    // The login's answer is described, and the token is a bearer scheme.
    assert_eq!(
        doc["components"]["securitySchemes"]["session_token"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["LoginDto"]["properties"]["token"].is_object());
}

#[actix_web::test]
async fn the_docs_page_loads_only_bundled_assets() {
    let app = spawn_app().await;
    let page = app.call("GET", "/docs", None, None).await;
    assert_eq!(page.status, 200);
    assert!(header(&page, "content-type").starts_with("text/html"));
    let csp = header(&page, "content-security-policy");
    for directive in [
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    // Nothing from another origin: every script and style sheet is served by this binary.
    assert!(
        !page.raw.contains("http://")
            && !page.raw.contains("https://")
            && !page.raw.contains("//cdn"),
        "{}",
        page.raw
    );
    let mut assets = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in page.raw.split(attr).skip(1) {
            assets.push(part.split('"').next().unwrap().to_owned());
        }
    }
    assert_eq!(
        assets.len(),
        3,
        "a style sheet and two scripts expected: {assets:?}"
    );
    for asset in &assets {
        assert!(asset.starts_with("docs/"), "{asset}");
        let r = app.call("GET", &format!("/{asset}"), None, None).await;
        assert_eq!(r.status, 200, "{asset}");
        let kind = header(&r, "content-type");
        if asset.ends_with(".js") {
            assert!(kind.starts_with("text/javascript"), "{asset}: {kind}");
        } else {
            assert!(kind.starts_with("text/css"), "{asset}: {kind}");
        }
        assert!(r.raw.len() > 100, "{asset} is empty");
    }
    // The page reads this server's document and never calls the public validator.
    let init = app.call("GET", "/docs/init.js", None, None).await;
    assert!(init.raw.contains("url: \"openapi.json\""), "{}", init.raw);
    assert!(init.raw.contains("validatorUrl: null"), "{}", init.raw);
    let bundle = app
        .call("GET", "/docs/swagger-ui-bundle.js", None, None)
        .await;
    assert!(bundle.raw.contains("SwaggerUIBundle"));
}

#[actix_web::test]
async fn an_unknown_docs_asset_is_a_404_problem() {
    let app = spawn_app().await;
    assert_problem(
        &app.call("GET", "/docs/../../etc/passwd", None, None).await,
        404,
        "not_found",
    );
    assert_problem(
        &app.call("GET", "/docs/swagger-ui.js.map", None, None).await,
        404,
        "not_found",
    );
}
