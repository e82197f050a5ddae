"""Class-name files (darknet's ``.names``: one label per line)."""

from __future__ import annotations

from pathlib import Path


def load_class_names(path: str | Path | None, num_classes: int) -> tuple[str, ...]:
    """Labels for ``num_classes`` classes; without a file, the class ids as strings.

    A file whose line count differs from the cfg's ``classes`` is an error: the
    labels would be silently wrong.
    """
    if path is None:
        return tuple(str(i) for i in range(num_classes))
    names = tuple(line.strip() for line in Path(path).read_text().splitlines() if line.strip())
    if len(names) != num_classes:
        raise ValueError(f"{path}: {len(names)} names, but the cfg has {num_classes} classes")
    return names
