//! The date behind a chat template's `strftime_now(format)` call, which
//! Llama 3.1 and later templates use to write the current date into the
//! system header.

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// A calendar date (proleptic Gregorian) at midnight UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    /// Days since 1970-01-01.
    days: i64,
}

impl Date {
    /// Returns the date for year, month (1-12) and day (1-31), or `None` if
    /// no such day exists.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Self> {
        let date = Self {
            days: days_from_civil(year, month, day),
        };
        (date.ymd() == (year, month, day)).then_some(date)
    }

    /// Returns today's date in UTC from the system clock.
    pub fn today_utc() -> Self {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            days: (seconds / 86_400) as i64,
        }
    }

    /// Returns (year, month 1-12, day 1-31).
    pub fn ymd(&self) -> (i32, u32, u32) {
        civil_from_days(self.days)
    }

    /// Formats the date with C `strftime` directives, as Python's
    /// `datetime.strftime` does for a time of 00:00:00.
    ///
    /// Supported: `%Y %y %m %d %e %j %B %b %h %A %a %H %I %M %S %p %%` and the
    /// glibc `%-d`, `%-m` forms without padding. Any other directive is an
    /// error naming it.
    pub fn strftime(&self, format: &str) -> Result<String, String> {
        let (year, month, day) = self.ymd();
        let month_name = MONTHS[month as usize - 1];
        let weekday = WEEKDAYS[(self.days + 3).rem_euclid(7) as usize];
        let day_of_year = self.days - days_from_civil(year, 1, 1) + 1;

        let mut out = String::new();
        let mut chars = format.chars();
        while let Some(ch) = chars.next() {
            if ch != '%' {
                out.push(ch);
                continue;
            }
            let mut directive = chars.next().ok_or("format ends with a lone '%'")?;
            let unpadded = directive == '-';
            if unpadded {
                directive = chars.next().ok_or("format ends with '%-'")?;
            }
            let piece = match (directive, unpadded) {
                ('Y', false) => year.to_string(),
                ('y', false) => format!("{:02}", year.rem_euclid(100)),
                ('m', false) => format!("{month:02}"),
                ('m', true) => month.to_string(),
                ('d', false) => format!("{day:02}"),
                ('d', true) => day.to_string(),
                ('e', false) => format!("{day:>2}"),
                ('j', false) => format!("{day_of_year:03}"),
                ('B', false) => month_name.to_string(),
                ('b' | 'h', false) => month_name[..3].to_string(),
                ('A', false) => weekday.to_string(),
                ('a', false) => weekday[..3].to_string(),
                ('H' | 'M' | 'S', false) => "00".to_string(),
                ('I', false) => "12".to_string(),
                ('p', false) => "AM".to_string(),
                ('%', false) => "%".to_string(),
                _ => {
                    let dash = if unpadded { "-" } else { "" };
                    return Err(format!("unsupported strftime directive %{dash}{directive}"));
                }
            };
            out.push_str(&piece);
        }
        Ok(out)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (any month and day
/// in range; out-of-range days roll over).
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (i64::from(month) + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Converts days since 1970-01-01 to (year, month, day), the inverse of
/// [`days_from_civil`].
fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = (if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    }) as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year as i32, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_is_a_thursday() {
        let date = Date::from_ymd(1970, 1, 1).unwrap();
        assert_eq!(date.strftime("%A %a").unwrap(), "Thursday Thu");
    }

    #[test]
    fn llama_date_format() {
        // Python: datetime.date(2024, 7, 26).strftime("%d %b %Y") == "26 Jul 2024"
        let date = Date::from_ymd(2024, 7, 26).unwrap();
        assert_eq!(date.strftime("%d %b %Y").unwrap(), "26 Jul 2024");
        assert_eq!(
            date.strftime("%A, %B %-d, %Y").unwrap(),
            "Friday, July 26, 2024"
        );
        assert_eq!(
            date.strftime("%Y-%m-%d %H:%M:%S %j").unwrap(),
            "2024-07-26 00:00:00 208"
        );
    }

    #[test]
    fn leap_day_round_trips() {
        let date = Date::from_ymd(2000, 2, 29).unwrap();
        assert_eq!(date.ymd(), (2000, 2, 29));
        assert!(Date::from_ymd(2023, 2, 29).is_none());
    }

    #[test]
    fn unknown_directive_is_rejected() {
        let date = Date::from_ymd(2024, 1, 2).unwrap();
        assert!(date.strftime("%Q").unwrap_err().contains("%Q"));
    }
}
