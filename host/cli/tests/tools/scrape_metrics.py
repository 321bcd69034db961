#!/usr/bin/env python3
"""Scrape havend's metrics as Prometheus would, and parse them with the Prometheus project's
own Python parsers (prometheus_client), which refuse malformed text.

Usage: scrape_metrics.py URL

It fetches URL twice with a real HTTP client (urllib): once asking for OpenMetrics, as
Prometheus does first, parsed with the strict OpenMetrics parser; once as a plain client, parsed
with the text-format 0.0.4 parser. It prints one JSON object: for each format, every sample as
[name, labels, value], and the content types served. Exit status 2 when prometheus_client is
missing (pip install prometheus-client), 1 when a page does not parse.
"""

import json
import sys
import urllib.request

try:
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as parse_openmetrics,
    )
    from prometheus_client.parser import text_string_to_metric_families as parse_text
except ImportError:
    print("prometheus_client is not installed: pip install prometheus-client", file=sys.stderr)
    sys.exit(2)


def fetch(url, accept):
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers.get("Content-Type"), response.read().decode("utf-8")


def samples(families):
    return [
        [sample.name, dict(sample.labels), sample.value]
        for family in families
        for sample in family.samples
    ]


def main():
    url = sys.argv[1]
    om_type, om_text = fetch(
        url, "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    )
    text_type, text = fetch(url, None)
    try:
        openmetrics = samples(parse_openmetrics(om_text))
        plain = samples(parse_text(text))
    except ValueError as error:
        print(f"the page does not parse: {error}", file=sys.stderr)
        sys.exit(1)
    print(
        json.dumps(
            {
                "openmetrics": {"content-type": om_type, "samples": openmetrics},
                "text": {"content-type": text_type, "samples": plain},
            }
        )
    )


main()
