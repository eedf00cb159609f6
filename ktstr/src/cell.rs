//! One cell: initramfs + backend run -> `CellResult`.
