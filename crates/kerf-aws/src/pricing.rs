//! Prices for the live catalog, as Karpenter's pricing provider gets them
//! (`pkg/providers/pricing/pricing.go`): on-demand from the AWS Pricing API's `GetProducts`,
//! spot from EC2's `DescribeSpotPriceHistory`, both refreshed at start and every 12 hours.
//!
//! Until the first refresh succeeds, and for every type a refresh does not name, on-demand
//! prices come from a committed fallback table: the embedded catalog's figures
//! (`kerf_model::catalog::aws::on_demand_prices`, us-east-1, dated
//! [`kerf_model::catalog::aws::PRICES_AS_OF`]), flagged `price_is_estimate`. Until the first
//! spot refresh, a spot offering costs the type's on-demand price, flagged too: Karpenter's
//! rule, which invents no discount for an account it has not seen. After it, a (type, zone)
//! the spot history does not price has no spot price, and its spot offering is not offered.
//!
//! A refresh merges its prices over the old ones; a refresh that fails, or finds nothing,
//! is an error and changes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::error::DisplayErrorContext;
use aws_sdk_ec2::types as ec2;
use aws_sdk_pricing::types::{Filter, FilterType};

/// How often prices (and instance types) are read again: Karpenter's 12 hours.
pub const REFRESH: Duration = Duration::from_secs(12 * 60 * 60);

/// The region of the Pricing API endpoint that serves `region`: the API is only in a few
/// (Karpenter's `NewAPI`).
pub fn endpoint_region(region: &str) -> &'static str {
    if region.starts_with("ap-") {
        "ap-south-1"
    } else if region.starts_with("eu-") {
        "eu-central-1"
    } else if region.starts_with("cn-") {
        "cn-northwest-1"
    } else {
        "us-east-1"
    }
}

/// The currency the Pricing API prices `region` in.
pub fn currency(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "CNY"
    } else {
        "USD"
    }
}

/// Why on-demand prices are not asked of the Pricing API for `region`, if they are not
/// (Karpenter's `UpdateOnDemandPricing`): in an isolated VPC the API may be out of reach,
/// and AWS GovCloud has none. The fallback table prices on-demand offerings then; spot
/// prices still come from EC2. (China has the API, at `cn-northwest-1`, priced in CNY.)
pub fn on_demand_skipped(region: &str, isolated_vpc: bool) -> Option<&'static str> {
    if isolated_vpc {
        Some("running in an isolated VPC (ISOLATED_VPC): on-demand prices are the fallback table's")
    } else if region.starts_with("us-gov") {
        Some(
            "the Pricing API is not available in AWS GovCloud regions: on-demand prices are the fallback table's",
        )
    } else {
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("{0}")]
    Api(String),
    /// The call succeeded and priced nothing: the old prices stay.
    #[error("{0} returned no prices")]
    Empty(&'static str),
}

/// One `GetProducts` page read: the price of each type it names, and why each entry it could
/// not use was skipped.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Products {
    pub prices: BTreeMap<String, f64>,
    pub errors: Vec<String>,
}

/// Reads `GetProducts`' `PriceList`: each entry is a JSON document whose
/// `product.attributes.instanceType` names the type and whose
/// `terms.OnDemand.*.priceDimensions.*.pricePerUnit.<currency>` holds the hourly price.
/// An entry that is not JSON, names no type or has no non-zero price in `currency` is
/// skipped and said in `errors`.
pub fn parse_products<S: AsRef<str>>(price_list: &[S], currency: &str) -> Products {
    let mut out = Products::default();
    for (i, entry) in price_list.iter().enumerate() {
        let doc: serde_json::Value = match serde_json::from_str(entry.as_ref()) {
            Ok(v) => v,
            Err(e) => {
                out.errors.push(format!("PriceList[{i}]: not JSON: {e}"));
                continue;
            }
        };
        let Some(name) = doc["product"]["attributes"]["instanceType"]
            .as_str()
            .filter(|n| !n.is_empty())
        else {
            out.errors.push(format!(
                "PriceList[{i}]: no product.attributes.instanceType"
            ));
            continue;
        };
        let price = doc["terms"]["OnDemand"]
            .as_object()
            .into_iter()
            .flat_map(|terms| terms.values())
            .filter_map(|term| term["priceDimensions"].as_object())
            .flat_map(|dims| dims.values())
            .filter_map(|d| d["pricePerUnit"][currency].as_str())
            .filter_map(|p| p.parse::<f64>().ok())
            .find(|p| p.is_finite() && *p > 0.0);
        match price {
            Some(p) => {
                out.prices.insert(name.to_string(), p);
            }
            None => out.errors.push(format!(
                "PriceList[{i}] ({name}): no non-zero {currency} price in terms.OnDemand"
            )),
        }
    }
    out
}

fn term_match(field: &str, value: &str) -> Filter {
    Filter::builder()
        .r#type(FilterType::TermMatch)
        .field(field)
        .value(value)
        .build()
        .expect("type, field and value are set")
}

/// What [`fetch_on_demand`] read: prices and the number of entries it skipped.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OnDemand {
    pub prices: BTreeMap<String, f64>,
    pub skipped: usize,
}

/// Linux on-demand prices of `region` from the Pricing API: shared-tenancy instances, then
/// bare metal (dedicated), each paginated 100 at a time. Either pass finding nothing is an
/// error, as in Karpenter.
pub async fn fetch_on_demand(
    client: &aws_sdk_pricing::Client,
    region: &str,
) -> Result<OnDemand, PricingError> {
    let mut out = OnDemand::default();
    for (tenancy, family) in [
        ("Shared", "Compute Instance"),
        ("Dedicated", "Compute Instance (bare metal)"),
    ] {
        let filters = vec![
            term_match("regionCode", region),
            term_match("serviceCode", "AmazonEC2"),
            term_match("preInstalledSw", "NA"),
            term_match("operatingSystem", "Linux"),
            term_match("capacitystatus", "Used"),
            term_match("marketoption", "OnDemand"),
            term_match("tenancy", tenancy),
            term_match("productFamily", family),
        ];
        let mut found = 0;
        let mut token: Option<String> = None;
        loop {
            let page = client
                .get_products()
                .service_code("AmazonEC2")
                .set_filters(Some(filters.clone()))
                .max_results(100)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| {
                    PricingError::Api(format!(
                        "GetProducts ({family}): {}",
                        DisplayErrorContext(e)
                    ))
                })?;
            let parsed = parse_products(page.price_list(), currency(region));
            for e in &parsed.errors {
                tracing::debug!(error = %e, "skipped a GetProducts entry");
            }
            out.skipped += parsed.errors.len();
            found += parsed.prices.len();
            out.prices.extend(parsed.prices);
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        if found == 0 {
            return Err(PricingError::Empty(if tenancy == "Shared" {
                "GetProducts (Compute Instance)"
            } else {
                "GetProducts (Compute Instance (bare metal))"
            }));
        }
    }
    Ok(out)
}

/// Spot prices by (instance type, zone), the newest of each, read from history entries.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Spot {
    /// (type, zone) → (price, timestamp in seconds).
    newest: BTreeMap<(String, String), (f64, i64)>,
    pub skipped: usize,
}

impl Spot {
    /// Adds one page of `DescribeSpotPriceHistory`: an entry replaces what is known for its
    /// (type, zone) only if it is newer. Entries without a type, zone, time or a positive
    /// price are skipped.
    pub fn add(&mut self, history: &[ec2::SpotPrice]) {
        for h in history {
            let parsed = (|| {
                let name = h.instance_type()?.as_str().to_string();
                let zone = h.availability_zone()?.to_string();
                let price: f64 = h.spot_price()?.parse().ok()?;
                let at = h.timestamp()?.secs();
                (price.is_finite() && price > 0.0).then_some((name, zone, price, at))
            })();
            let Some((name, zone, price, at)) = parsed else {
                self.skipped += 1;
                continue;
            };
            let slot = self.newest.entry((name, zone)).or_insert((price, at));
            if at >= slot.1 {
                *slot = (price, at);
            }
        }
    }

    pub fn prices(&self) -> BTreeMap<(String, String), f64> {
        self.newest
            .iter()
            .map(|(k, (price, _))| (k.clone(), *price))
            .collect()
    }
}

/// The current Linux spot prices of the region (Karpenter's `UpdateSpotPricing`):
/// `DescribeSpotPriceHistory` from now, for `Linux/UNIX` and `Linux/UNIX (Amazon VPC)`,
/// 2,000 a page.
pub async fn fetch_spot(ec2c: &aws_sdk_ec2::Client) -> Result<Spot, PricingError> {
    let mut spot = Spot::default();
    let now = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
    let mut token: Option<String> = None;
    loop {
        let page = ec2c
            .describe_spot_price_history()
            .product_descriptions("Linux/UNIX")
            .product_descriptions("Linux/UNIX (Amazon VPC)")
            .start_time(now)
            .max_results(2000)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| {
                PricingError::Api(format!(
                    "DescribeSpotPriceHistory: {}",
                    DisplayErrorContext(e)
                ))
            })?;
        spot.add(page.spot_price_history());
        token = page
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    if spot.newest.is_empty() {
        return Err(PricingError::Empty("DescribeSpotPriceHistory"));
    }
    Ok(spot)
}

/// A price and whether it is an estimate (the fallback table, or on-demand standing in
/// for spot) rather than what the API said.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub usd: f64,
    pub estimate: bool,
}

/// The prices the live catalog is built with.
#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    on_demand: BTreeMap<String, Price>,
    spot: BTreeMap<(String, String), f64>,
    spot_updated: bool,
}

impl Default for Prices {
    fn default() -> Self {
        Prices::fallback()
    }
}

impl Prices {
    /// The committed fallback: the embedded catalog's on-demand figures (us-east-1, dated
    /// [`kerf_model::catalog::aws::PRICES_AS_OF`]), all estimates; no spot prices yet.
    pub fn fallback() -> Prices {
        Prices {
            on_demand: kerf_model::catalog::aws::on_demand_prices()
                .into_iter()
                .map(|(t, usd)| {
                    (
                        t,
                        Price {
                            usd,
                            estimate: true,
                        },
                    )
                })
                .collect(),
            spot: BTreeMap::new(),
            spot_updated: false,
        }
    }

    pub fn on_demand(&self, instance_type: &str) -> Option<Price> {
        self.on_demand.get(instance_type).copied()
    }

    /// The spot price of `instance_type` in `zone`: before the first spot refresh, its
    /// on-demand price as an estimate; after it, what the history said, or none.
    pub fn spot(&self, instance_type: &str, zone: &str) -> Option<Price> {
        if !self.spot_updated {
            return self.on_demand(instance_type).map(|p| Price {
                usd: p.usd,
                estimate: true,
            });
        }
        self.spot
            .get(&(instance_type.to_string(), zone.to_string()))
            .map(|&usd| Price {
                usd,
                estimate: false,
            })
    }

    pub fn spot_updated(&self) -> bool {
        self.spot_updated
    }

    /// How many on-demand prices came from the API rather than the fallback.
    pub fn live_on_demand(&self) -> usize {
        self.on_demand.values().filter(|p| !p.estimate).count()
    }

    /// Merges fresh on-demand prices over the known ones; returns how many there were.
    /// Nothing fresh is an error and changes nothing.
    pub fn merge_on_demand(&mut self, fresh: BTreeMap<String, f64>) -> Result<usize, PricingError> {
        if fresh.is_empty() {
            return Err(PricingError::Empty("on-demand pricing"));
        }
        let n = fresh.len();
        for (t, usd) in fresh {
            self.on_demand.insert(
                t,
                Price {
                    usd,
                    estimate: false,
                },
            );
        }
        Ok(n)
    }

    /// Merges fresh spot prices over the known ones (by type and zone); from then on spot
    /// offerings are priced by the history. Nothing fresh is an error and changes nothing.
    pub fn merge_spot(
        &mut self,
        fresh: BTreeMap<(String, String), f64>,
    ) -> Result<usize, PricingError> {
        if fresh.is_empty() {
            return Err(PricingError::Empty("spot pricing"));
        }
        let n = fresh.len();
        self.spot.extend(fresh);
        self.spot_updated = true;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three entries as `GetProducts` returns them (each a JSON string; shape of the AWS
    /// Price List API's documented output), then one cut short (not JSON), one whose only
    /// USD price is zero and one naming no instance type.
    const FIXTURE: &str = include_str!("../testdata/get_products.json");

    fn fixture() -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
        v["PriceList"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn get_products_entries_give_the_on_demand_price_of_their_type() {
        let parsed = parse_products(&fixture(), "USD");
        assert_eq!(
            parsed.prices,
            BTreeMap::from([
                ("m6g.large".to_string(), 0.077),
                ("c6i.xlarge".to_string(), 0.17),
                ("m7i.metal-24xl".to_string(), 4.8384),
            ])
        );
        assert_eq!(parsed.errors.len(), 3, "{:?}", parsed.errors);
        assert!(
            parsed.errors[0].starts_with("PriceList[3]: not JSON"),
            "{:?}",
            parsed.errors
        );
        assert_eq!(
            parsed.errors[1],
            "PriceList[4] (r6i.large): no non-zero USD price in terms.OnDemand"
        );
        assert_eq!(
            parsed.errors[2],
            "PriceList[5]: no product.attributes.instanceType"
        );
        // The same entries in China's currency price nothing.
        let cny = parse_products(&fixture(), "CNY");
        assert!(cny.prices.is_empty());
        assert_eq!(cny.errors.len(), 6);
    }

    #[test]
    fn the_pricing_api_is_skipped_in_an_isolated_vpc_and_in_govcloud() {
        assert!(
            on_demand_skipped("us-west-2", true)
                .unwrap()
                .contains("ISOLATED_VPC")
        );
        assert!(
            on_demand_skipped("us-gov-west-1", false)
                .unwrap()
                .contains("GovCloud")
        );
        assert!(on_demand_skipped("us-gov-east-1", false).is_some());
        for region in ["us-east-1", "eu-west-1", "cn-north-1", "ap-south-1"] {
            assert_eq!(on_demand_skipped(region, false), None, "{region}");
        }
    }

    #[test]
    fn pricing_endpoints_follow_the_region() {
        assert_eq!(endpoint_region("us-west-2"), "us-east-1");
        assert_eq!(endpoint_region("ap-northeast-1"), "ap-south-1");
        assert_eq!(endpoint_region("eu-west-3"), "eu-central-1");
        assert_eq!(endpoint_region("cn-north-1"), "cn-northwest-1");
        assert_eq!(endpoint_region("sa-east-1"), "us-east-1");
        assert_eq!(currency("cn-north-1"), "CNY");
        assert_eq!(currency("eu-west-1"), "USD");
    }

    #[test]
    fn the_fallback_is_the_embedded_table_flagged_as_estimates() {
        let p = Prices::fallback();
        let m7g = p.on_demand("m7g.xlarge").unwrap();
        assert_eq!(m7g.usd, 0.1632);
        assert!(m7g.estimate);
        assert_eq!(p.on_demand("t3.micro"), None);
        assert_eq!(p.live_on_demand(), 0);
        // Spot stands at on-demand until the first spot refresh.
        assert_eq!(
            p.spot("m7g.xlarge", "us-west-2a"),
            Some(Price {
                usd: 0.1632,
                estimate: true
            })
        );
        assert!(!p.spot_updated());
    }

    #[test]
    fn on_demand_refreshes_merge_over_the_old_prices_and_nothing_is_an_error() {
        let mut p = Prices::fallback();
        let fresh = BTreeMap::from([
            ("m7g.xlarge".to_string(), 0.17),
            ("t3.micro".to_string(), 0.0104),
        ]);
        assert_eq!(p.merge_on_demand(fresh), Ok(2));
        assert_eq!(
            p.on_demand("m7g.xlarge"),
            Some(Price {
                usd: 0.17,
                estimate: false
            })
        );
        assert_eq!(p.on_demand("t3.micro").unwrap().usd, 0.0104);
        // A type the refresh did not name keeps its fallback figure, still an estimate.
        assert_eq!(
            p.on_demand("c6i.large"),
            Some(Price {
                usd: 0.085,
                estimate: true
            })
        );
        assert_eq!(p.live_on_demand(), 2);
        let before = p.clone();
        assert_eq!(
            p.merge_on_demand(BTreeMap::new()),
            Err(PricingError::Empty("on-demand pricing"))
        );
        assert_eq!(p, before, "an empty refresh keeps the old prices");
        // A later refresh replaces only what it names.
        p.merge_on_demand(BTreeMap::from([("t3.micro".to_string(), 0.011)]))
            .unwrap();
        assert_eq!(p.on_demand("t3.micro").unwrap().usd, 0.011);
        assert_eq!(p.on_demand("m7g.xlarge").unwrap().usd, 0.17);
    }

    fn sp(t: &str, zone: &str, price: &str, secs: i64) -> ec2::SpotPrice {
        ec2::SpotPrice::builder()
            .instance_type(ec2::InstanceType::from(t))
            .availability_zone(zone)
            .spot_price(price)
            .timestamp(aws_smithy_types::DateTime::from_secs(secs))
            .product_description(ec2::RiProductDescription::LinuxUnixAmazonVpc)
            .build()
    }

    #[test]
    fn spot_history_keeps_the_newest_price_per_type_and_zone() {
        let mut spot = Spot::default();
        spot.add(&[
            sp("m6g.large", "us-west-2a", "0.0300", 100),
            sp("m6g.large", "us-west-2a", "0.0310", 300),
            sp("m6g.large", "us-west-2b", "0.0290", 200),
            sp("m6g.large", "us-west-2a", "0.0305", 200),
            sp("m6g.large", "us-west-2c", "n/a", 200),
            sp("m6g.large", "us-west-2c", "0", 200),
        ]);
        spot.add(&[ec2::SpotPrice::builder().spot_price("0.1").build()]);
        assert_eq!(
            spot.prices(),
            BTreeMap::from([
                (("m6g.large".to_string(), "us-west-2a".to_string()), 0.031),
                (("m6g.large".to_string(), "us-west-2b".to_string()), 0.029),
            ])
        );
        assert_eq!(spot.skipped, 3);
    }

    #[test]
    fn spot_refreshes_replace_the_on_demand_stand_in_and_merge() {
        let mut p = Prices::fallback();
        let key = |t: &str, z: &str| (t.to_string(), z.to_string());
        assert_eq!(
            p.merge_spot(BTreeMap::from([(key("m7g.xlarge", "us-west-2a"), 0.05)])),
            Ok(1)
        );
        assert_eq!(
            p.spot("m7g.xlarge", "us-west-2a"),
            Some(Price {
                usd: 0.05,
                estimate: false
            })
        );
        // Once the history is read, what it does not price has no spot price.
        assert_eq!(p.spot("m7g.xlarge", "us-west-2b"), None);
        let before = p.clone();
        assert_eq!(
            p.merge_spot(BTreeMap::new()),
            Err(PricingError::Empty("spot pricing"))
        );
        assert_eq!(p, before);
        p.merge_spot(BTreeMap::from([(key("m7g.xlarge", "us-west-2b"), 0.06)]))
            .unwrap();
        assert_eq!(p.spot("m7g.xlarge", "us-west-2a").unwrap().usd, 0.05);
        assert_eq!(p.spot("m7g.xlarge", "us-west-2b").unwrap().usd, 0.06);
    }
}
