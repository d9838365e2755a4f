//! Kubernetes resource quantities, held as integer milli-units.
//!
//! Every resource is stored the same way — thousandths of its base unit — so that
//! arithmetic is exact and uniform: `500m` CPU is 500, `1Gi` of memory is
//! 1_073_741_824_000, `110` pods is 110_000. Parsing rounds fractions of a milli-unit
//! up, as the Kubernetes API server does for requests.

use std::fmt;

/// A quantity in milli-units of its resource's base unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity(pub i64);

/// Why a string is not a Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a Kubernetes quantity ({why}); expected e.g. \"500m\", \"2\", \"1.5Gi\", \"512Mi\", \"1e3\""
)]
pub struct QuantityError {
    pub input: String,
    pub why: &'static str,
}

impl Quantity {
    pub const ZERO: Quantity = Quantity(0);

    /// A whole number of base units (cores, bytes, pods).
    pub const fn from_units(units: i64) -> Quantity {
        Quantity(units * 1000)
    }

    pub const fn from_milli(milli: i64) -> Quantity {
        Quantity(milli)
    }

    /// Rounded up to a whole number of base units, as Kubernetes reads every resource but
    /// CPU (`Quantity.Value()`): `1.0000001Ki` of memory is 1025 bytes.
    pub fn ceil_units(self) -> Quantity {
        let whole = self.0.div_euclid(1000) + i64::from(self.0.rem_euclid(1000) != 0);
        Quantity(whole * 1000)
    }

    /// Parses the Kubernetes quantity grammar: a signed decimal number with an optional
    /// binary suffix (Ki Mi Gi Ti Pi Ei), decimal suffix (n u m "" k M G T P E) or
    /// exponent (`e3`, `E-2`).
    pub fn parse(input: &str) -> Result<Quantity, QuantityError> {
        let err = |why| QuantityError {
            input: input.to_string(),
            why,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        let (negative, s) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(num_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(err("no number"));
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        // Value = mantissa * 10^exp10 * 2^exp2 (in base units); we want milli-units.
        let (exp10, exp2): (i32, u32) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            s if s.starts_with(['e', 'E']) => {
                let e: i32 = s[1..].parse().map_err(|_| err("bad exponent"))?;
                (e, 0)
            }
            _ => return Err(err("unknown suffix")),
        };
        let digits = format!("{int_part}{frac_part}");
        let mantissa: i128 = digits.parse().map_err(|_| err("number too large"))?;
        // mantissa * 10^(exp10 - frac_len + 3) * 2^exp2 milli-units.
        let scale = exp10 - frac_part.len() as i32 + 3;
        let mut value: i128 = mantissa
            .checked_mul(1i128 << exp2)
            .ok_or_else(|| err("number too large"))?;
        if scale >= 0 {
            let factor = 10i128
                .checked_pow(scale as u32)
                .ok_or_else(|| err("number too large"))?;
            value = value
                .checked_mul(factor)
                .ok_or_else(|| err("number too large"))?;
        } else {
            let divisor = 10i128.checked_pow((-scale) as u32).unwrap_or(i128::MAX);
            // Round up: a request for 0.5m CPU needs a whole milli-core.
            value = (value + divisor - 1) / divisor;
        }
        let value = i64::try_from(value).map_err(|_| err("number too large"))?;
        Ok(Quantity(if negative { -value } else { value }))
    }

    /// Renders as a CPU quantity: `3500m`, `4`.
    pub fn to_cpu_string(self) -> String {
        if self.0 % 1000 == 0 {
            format!("{}", self.0 / 1000)
        } else {
            format!("{}m", self.0)
        }
    }

    /// Renders as a byte quantity with the largest exact binary suffix: `6Gi`, `512Mi`.
    pub fn to_bytes_string(self) -> String {
        if self.0 % 1000 != 0 {
            return format!("{}m", self.0);
        }
        let bytes = self.0 / 1000;
        if bytes == 0 {
            return "0".to_string();
        }
        for (suffix, shift) in [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
            if bytes % (1i64 << shift) == 0 {
                return format!("{}{}", bytes >> shift, suffix);
            }
        }
        format!("{bytes}")
    }
}

impl std::ops::Add for Quantity {
    type Output = Quantity;
    fn add(self, rhs: Quantity) -> Quantity {
        Quantity(self.0 + rhs.0)
    }
}

impl std::ops::Sub for Quantity {
    type Output = Quantity;
    fn sub(self, rhs: Quantity) -> Quantity {
        Quantity(self.0 - rhs.0)
    }
}

impl std::ops::AddAssign for Quantity {
    fn add_assign(&mut self, rhs: Quantity) {
        self.0 += rhs.0;
    }
}

impl std::ops::SubAssign for Quantity {
    fn sub_assign(&mut self, rhs: Quantity) {
        self.0 -= rhs.0;
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_cpu_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_units_round_up() {
        let q = |s| Quantity::parse(s).unwrap();
        assert_eq!(q("1.0000001Ki").ceil_units(), Quantity::from_units(1025));
        assert_eq!(q("1Gi").ceil_units(), q("1Gi"));
        assert_eq!(q("100m").ceil_units(), Quantity::from_units(1));
        assert_eq!(Quantity::ZERO.ceil_units(), Quantity::ZERO);
    }

    #[test]
    fn parses_the_kubernetes_grammar() {
        let cases = [
            ("500m", 500),
            ("2", 2000),
            ("0.5", 500),
            ("1.5", 1500),
            ("1Gi", 1_073_741_824_000),
            ("512Mi", 536_870_912_000),
            ("1k", 1_000_000),
            ("1e3", 1_000_000),
            ("1E-3", 1),
            ("100n", 1), // rounds up to a whole milli-unit
            ("-1", -1000),
            ("+250m", 250),
            ("1.5Gi", 1_610_612_736_000),
        ];
        for (input, milli) in cases {
            assert_eq!(Quantity::parse(input), Ok(Quantity(milli)), "{input}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_quantity() {
        for bad in ["", "abc", "1.2.3", "5X", "Gi", "."] {
            let e = Quantity::parse(bad).unwrap_err();
            assert!(e.to_string().contains("not a Kubernetes quantity"), "{e}");
        }
    }

    #[test]
    fn renders_round_trip() {
        assert_eq!(Quantity(3500).to_cpu_string(), "3500m");
        assert_eq!(Quantity(4000).to_cpu_string(), "4");
        assert_eq!(Quantity::parse("6Gi").unwrap().to_bytes_string(), "6Gi");
        assert_eq!(
            Quantity::parse("1536Mi").unwrap().to_bytes_string(),
            "1536Mi"
        );
        assert_eq!(Quantity::parse("1000").unwrap().to_bytes_string(), "1000");
    }
}
