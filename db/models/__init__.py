"""SQLModel tables, one module per aggregate. Importing this package registers them all."""

from db.models.image import Image, OutputImage
from db.models.embedding import CodeEmbedding, EmbeddingModel, ImageEmbedding, ImagePhash, TextEmbedding
from db.models.kaggle import KaggleKernel, KagglePull, MiningListing, MiningRun
from db.models.notebook import Cell, Notebook, Output
from db.models.provenance import IngestRun, Problem, Source
from db.models.reproduce import Run, RunCell, RunOutput, RunOutputImage, RunRequest
from db.models.study import Annotation, Annotator, Code, Codebook, Sample, SampleItem
from db.models.understand import CellAnalysis, NotebookAnalysis, OutputPlot
from db.models import search_indexes  # noqa: F401  indexes the API needs, on the tables above

__all__ = ["Cell", "CellAnalysis", "NotebookAnalysis", "OutputPlot", "CodeEmbedding", "EmbeddingModel", "ImageEmbedding", "ImagePhash", "TextEmbedding", "Image", "IngestRun", "KaggleKernel", "KagglePull", "MiningListing", "MiningRun", "Notebook", "Output", "OutputImage", "Problem", "Run", "RunCell", "RunOutput", "RunOutputImage", "RunRequest", "Source", "Annotation", "Annotator", "Code", "Codebook", "Sample", "SampleItem"]
