"""The vocabulary: each list defined once, and the modules that use it share the very same object."""

from __future__ import annotations

from kpi_alerts import vocabulary
from kpi_alerts.conditions import thresholds
from kpi_alerts.cube import rest_format
from kpi_alerts.reports import EXTENSIONS, MIME_TYPES, formatting, model
from kpi_alerts.vocabulary import AttachmentKind, LedgerStatus


class TestVocabulary:
    def test_granularities_are_shared_not_copied(self) -> None:
        assert rest_format.GRANULARITIES is vocabulary.GRANULARITIES
        assert thresholds.GRANULARITIES is vocabulary.GRANULARITIES
        assert formatting.GRANULARITIES is vocabulary.GRANULARITIES
        assert set(vocabulary.DATE_GRANULARITIES) == {"day", "week", "month", "quarter", "year"}

    def test_additive_aggregations(self) -> None:
        assert set(vocabulary.ADDITIVE_AGGREGATIONS) == {"count", "sum"}
        assert thresholds.ADDITIVE_AGGREGATIONS is model.ADDITIVE_AGGREGATIONS

    def test_statuses_are_the_strings_stored(self) -> None:
        assert LedgerStatus.SENT == "sent"
        assert LedgerStatus("delivery_unknown") is LedgerStatus.DELIVERY_UNKNOWN
        assert f"{LedgerStatus.FAILED}" == "failed"

    def test_attachment_kinds_name_their_file(self) -> None:
        assert AttachmentKind.EXCEL.extension == "xlsx"
        assert EXTENSIONS == {"pdf": "pdf", "excel": "xlsx", "csv": "csv"}
        assert MIME_TYPES["csv"] == "text/csv"

    def test_the_history_filter_of_the_rest_api_takes_every_status(self) -> None:
        from kpi_alerts.web.api import create_api_app

        schema = create_api_app().openapi()
        parameters = schema["paths"]["/alerts/{alert_id}/history"]["get"]["parameters"]
        status = next(p for p in parameters if p["name"] == "status")
        enum = next(s for s in status["schema"]["anyOf"] if "$ref" in s)["$ref"].rsplit("/", 1)[-1]
        assert set(schema["components"]["schemas"][enum]["enum"]) == {s.value for s in LedgerStatus}
