"""The engine: container records, run options, and the interface both backends implement."""
