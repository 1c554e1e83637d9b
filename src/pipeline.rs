//! What a deployment consists of: its topics (and, as stages land, the stages a `run` starts).

use crate::config::Config;
use crate::kafka::{TopicSpec, Topics};
use crate::runtime::StageName;

/// Every topic crmflow writes, with its partitioning and cleanup policy.
pub fn topic_specs(cfg: &Config) -> Vec<TopicSpec> {
    let t = Topics::new(&cfg.kafka);
    let p = cfg.kafka.partitions;
    let mut specs: Vec<TopicSpec> = cfg
        .bullhorn
        .entities
        .iter()
        .map(|e| TopicSpec {
            name: t.raw("bullhorn", e),
            partitions: p,
            compacted: false,
        })
        .collect();
    specs.extend(
        salesforce_raw_topics(cfg)
            .into_iter()
            .map(|name| TopicSpec {
                name,
                partitions: p,
                compacted: false,
            }),
    );
    specs.extend(hubspot_raw_topics(cfg).into_iter().map(|name| TopicSpec {
        name,
        partitions: p,
        compacted: false,
    }));
    for entity in ["candidate", "position"] {
        specs.push(TopicSpec {
            name: t.canonical(entity),
            partitions: p,
            compacted: true,
        });
    }
    specs.push(TopicSpec {
        name: t.dlq(),
        partitions: p,
        compacted: false,
    });
    specs
}

/// The Kafka topics `stage` consumes (none for ingest, which reads the CRM, and match, which
/// reads its Postgres queue).
pub fn input_topics(cfg: &Config, stage: StageName) -> Vec<String> {
    let t = Topics::new(&cfg.kafka);
    match stage {
        StageName::Normalize => cfg
            .bullhorn
            .entities
            .iter()
            .map(|e| t.raw("bullhorn", e))
            .chain(hubspot_raw_topics(cfg))
            .chain(salesforce_raw_topics(cfg))
            .collect(),
        StageName::Sink | StageName::Embed => {
            vec![t.canonical("candidate"), t.canonical("position")]
        }
        StageName::Ingest | StageName::Match | StageName::Ingress => Vec::new(),
    }
}

/// `crm.raw.hubspot.<entity>` of every configured HubSpot object (none when HubSpot is off).
pub fn hubspot_raw_topics(cfg: &Config) -> Vec<String> {
    let t = Topics::new(&cfg.kafka);
    cfg.hubspot
        .iter()
        .flat_map(|h| h.objects.iter())
        .map(|o| t.raw("hubspot", &o.entity))
        .collect()
}

/// `crm.raw.salesforce.<Object>` of every configured Salesforce object (none when Salesforce is off).
pub fn salesforce_raw_topics(cfg: &Config) -> Vec<String> {
    let t = Topics::new(&cfg.kafka);
    if !cfg.salesforce.enabled {
        return Vec::new();
    }
    cfg.salesforce
        .objects
        .iter()
        .map(|o| t.raw("salesforce", o))
        .collect()
}
