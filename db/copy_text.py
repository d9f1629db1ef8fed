"""PostgreSQL COPY text format, shared by every loader that renders rows itself."""


def copy_escape(text: str) -> str:
    """Escape a value for COPY's text format: backslash, newline, carriage return and tab are special.

    str.replace per character runs in C; str.translate with a dict is many times slower, and this
    runs on every cell and output of an ingest.
    """
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "\n" in text:
        text = text.replace("\n", "\\n")
    if "\r" in text:
        text = text.replace("\r", "\\r")
    if "\t" in text:
        text = text.replace("\t", "\\t")
    return text
