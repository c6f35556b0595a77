//! Production disk: memmap2 mappings plus fsync of file and directory. OWNER: store helper.
