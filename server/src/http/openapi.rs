//! The OpenAPI 3.1 document of the HTTP door, generated from the handlers' annotations and
//! the request and response types (utoipa), served at `/api/v1/openapi.json` and committed
//! as docs/openapi.json (a test fails when they differ; `kuku openapi > docs/openapi.json`
//! regenerates it).

use super::admin;
use super::api;
use super::history;
use super::market;
use super::problem::Problem;
use std::sync::OnceLock;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kuku HTTP API",
        description = "Orders, portfolio, market data and administration of a Kuku node over \
                       HTTP. Errors are RFC 9457 problem details whose `code` is the stable \
                       reject code of the binary protocol (docs/protocol.md). See docs/api.md.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        api::issue_token,
        api::place_order,
        api::list_orders,
        api::get_order,
        api::cancel_order,
        api::modify_order,
        api::cancel_all,
        api::get_account,
        api::get_positions,
        api::get_portfolio,
        api::get_market,
        api::list_symbols,
        api::get_symbol,
        api::get_book,
        api::get_quote,
        api::get_trades,
        market::get_candles,
        market::get_market_quote,
        market::get_market_ticks,
        market::list_markets,
        market::list_reference_symbols,
        market::get_reference_symbol,
        market::list_mappings,
        market::resolve,
        history::transactions,
        history::trades,
        admin::open_account,
        admin::get_any_account,
        admin::trading_token,
        admin::deposit,
        admin::withdraw,
        admin::confirm,
        admin::fail,
        admin::reverse,
        admin::transfer_in,
        admin::register_symbol,
        admin::set_fees,
        market::register_reference_symbol,
        market::map_symbol,
    ),
    components(schemas(Problem)),
    modifiers(&Security),
    tags(
        (name = "auth", description = "Access tokens"),
        (name = "orders", description = "Place, modify, cancel and list orders"),
        (name = "account", description = "Cash, positions and the valued portfolio"),
        (name = "market", description = "Kuku's symbols, Kuku's own book, quote and recent trades"),
        (name = "market-data", description = "The market's data from the feed: its ten-level quote, its trades (ticks) and candles"),
        (name = "reference", description = "Markets, symbols as the market lists them, provider mappings"),
        (name = "admin", description = "Accounts, money, shares, symbols and reference data (the admin token)"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("An access token from POST /api/v1/auth/token"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The node's admin token (64 hex digits)"))
                    .build(),
            ),
        );
    }
}

/// The document as served and committed (pretty JSON, with a final newline).
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut text = ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes");
        text.push('\n');
        text
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_openapi_document_is_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == super::document(),
            "docs/openapi.json differs from the API the code serves: regenerate it with \
             `cargo run -p kuku-server -- openapi > docs/openapi.json`"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1() {
        let doc: serde_json::Value = serde_json::from_str(super::document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["paths"]["/api/v1/orders"]["post"].is_object());
    }
}
