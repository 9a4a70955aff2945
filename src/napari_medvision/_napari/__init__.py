"""napari glue without Qt: Volume <-> layer data, reader / writer / sample-data hooks."""
