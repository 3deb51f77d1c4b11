"""The package's shape (issue 22): no module imports another that imports it back, directly or through
others, TYPE_CHECKING imports included. The layers between subpackages are import-linter's
contracts in pyproject.toml (``make lint``)."""

from __future__ import annotations

import grimp


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = grimp.build_graph("kpi_alerts", exclude_type_checking_imports=False)
    cycles = sorted(
        f"{module} -> {imported} -> ... -> {module}"
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if graph.chain_exists(importer=imported, imported=module)
    )
    assert not cycles, "\n".join(cycles)
