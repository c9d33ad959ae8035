;; ref.null/ref.is_null/ref.func, typed select, table.init/copy, elem.drop.
(module
  (type $t (func (result i32)))
  (import "env" "table" (table $imported 3 funcref))
  (table $own 5 funcref)
  (func $a (type $t) (i32.const 5))
  (func $b (type $t) (i32.const 6))
  (elem $passive funcref (ref.func $a) (ref.null func) (ref.func $b))
  (func (export "refs") (param externref) (result i32)
    (table.init $own $passive (i32.const 1) (i32.const 0) (i32.const 3))
    (elem.drop $passive)
    (table.copy $imported $own (i32.const 0) (i32.const 1) (i32.const 3))
    (i32.add
      (ref.is_null (local.get 0))
      (ref.is_null (select (result funcref) (ref.func $a) (ref.null func) (i32.const 0)))))
  (func (export "call") (param i32) (result i32)
    (call_indirect $imported (type $t) (local.get 0))))
