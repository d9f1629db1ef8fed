"""SQLModel tables, one module per aggregate. Importing this package registers them all."""

from db.models.image import Image, OutputImage
from db.models.notebook import Cell, Notebook, Output
from db.models.provenance import IngestRun, Problem, Source

__all__ = ["Cell", "Image", "IngestRun", "Notebook", "Output", "OutputImage", "Problem", "Source"]
