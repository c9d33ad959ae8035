;; Traps and edge cases of arithmetic: division, conversions, sign extension,
;; saturating truncation, NaN and signed zeros.
(module
  (func (export "div") (param i32) (result i32) (i32.div_s (i32.const -2147483648) (local.get 0)))
  (func (export "overflow") (result i32) (i32.div_s (i32.const -2147483648) (i32.const -1)))
  (func (export "rem") (result i64) (i64.rem_s (i64.const -9223372036854775808) (i64.const -1)))
  (func (export "trunc") (param f64) (result i32) (i32.trunc_f64_s (f64.div (local.get 0) (local.get 0))))
  (func (export "sat") (result i64)
    (i64.add (i64.trunc_sat_f32_u (f32.const -inf)) (i64.trunc_sat_f64_s (f64.const nan))))
  (func (export "extend") (result i64)
    (i64.add (i64.extend8_s (i64.const 0x80)) (i64.extend_i32_s (i32.extend16_s (i32.const 0x8000)))))
  (func (export "minmax") (result f32)
    (f32.add (f32.min (f32.const 0) (f32.const -0)) (f32.max (f32.const nan) (f32.const 1))))
  (func (export "bits") (result i32)
    (i32.add (i32.popcnt (i32.const -1))
      (i32.add (i32.clz (i32.const 0)) (i32.rotl (i32.const 1) (i32.const 33)))))
  (func (export "convert") (result f64)
    (f64.add (f64.convert_i64_u (i64.const -1)) (f64.promote_f32 (f32.demote_f64 (f64.const 1e300))))))
