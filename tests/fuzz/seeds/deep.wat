;; Many locals, deep recursion with a growing frame, a memory.grow loop.
(module
  (memory 1)
  (func $down (export "down") (param i64) (result i64)
    (local f64 f64 f64 f64 f64 f64 f64 f64)
    (call $down (i64.add (local.get 0) (i64.const 1))))
  (func (export "bomb") (result i32)
    (loop $l
      (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    (memory.size))
  (func (export "locals") (result i32)
    (local i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)
    (local.set 15 (i32.const 9))
    (local.tee 3 (local.get 15))))
