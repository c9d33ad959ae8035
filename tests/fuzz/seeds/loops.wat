;; Counted loops, nested blocks, an endless loop (stopped by fuel).
(module
  (func (export "sum") (param $n i32) (result i32)
    (local $i i32) (local $acc i32)
    (local.set $n (i32.add (local.get $n) (i32.const 100)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $acc (i32.add (local.get $acc) (local.get $i)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $acc))
  (func (export "nested") (result i32)
    (block (result i32)
      (block (result i32)
        (block (result i32)
          (loop (result i32) (i32.const 3))))))
  (func (export "forever") (loop $l (br $l))))
