#!/usr/bin/env bash
# Regenerate the README's screenshots of the HTML report (docs/img/report*.png) from the browser
# tests: they run a chaos campaign on the sim tier, open its page in Chromium and save screenshots.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ORCH_ARTIFACTS="$out" python3 -m pytest -q -p no:cacheprovider tests/test_report_browser.py \
    -k "test_layout and campaign and 1440"
mkdir -p docs/img
cp "$out/report-screenshots/campaign-1440.png" docs/img/report.png
cp "$out/report-screenshots/campaign-timeline.png" docs/img/report-timeline.png
ls -l docs/img/report.png docs/img/report-timeline.png
