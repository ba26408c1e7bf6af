"""Summaries over the journal (metrics, fleet views, timelines) and their presentation
(Markdown and JSON dashboards, the HTML report and its charts). Imports only store/ and engine/."""
