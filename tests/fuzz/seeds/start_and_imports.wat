;; Every kind of import, a start function that calls the host and writes
;; memory, and re-exports of imports.
(module
  (import "env" "f" (func $f (param i64 f32 f64 externref funcref) (result i32 f64)))
  (import "env" "memory" (memory 1 2))
  (import "env" "table" (table 4 externref))
  (import "env" "g" (global $g (mut f64)))
  (func $start
    (drop (drop (call $f (i64.const 1) (f32.const 2) (f64.const 3) (ref.null extern) (ref.null func))))
    (i32.store (i32.const 0) (i32.const 1)))
  (start $start)
  (export "f" (func $f))
  (export "memory" (memory 0))
  (func (export "setg") (global.set $g (f64.const 1))))
