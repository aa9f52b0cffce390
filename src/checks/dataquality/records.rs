//! Typed shapes of the shipped data files (`clients.json`, `employees.json`,
//! `orders.json`) and per-record semantic checks.
//!
//! Every data file is a JSON array of records. Unknown fields are rejected
//! (`deny_unknown_fields`) so that a typo such as `manger_id` is reported
//! instead of being silently ignored.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// One employee (`employees.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Employee {
    /// `EMP-` followed by at least four digits.
    pub id: String,
    pub name: String,
    pub email: String,
    pub department: String,
    pub role: String,
    /// `null` only for the chief executive (root of the management tree).
    pub manager_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hire_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// One client account (`clients.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    /// `CL-` followed by at least four digits.
    pub id: String,
    pub name: String,
    pub email: String,
    /// Employee id of the account manager.
    pub account_manager_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industry: Option<String>,
    /// ISO 3166-1 alpha-2 code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
}

/// Lifecycle state of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
    Refunded,
}

/// One order (`orders.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// `ORD-` followed by at least four digits.
    pub id: String,
    pub client_id: String,
    /// Employee id of the sales representative.
    pub sales_rep_id: String,
    /// Non-negative, finite amount in `currency`.
    pub amount: f64,
    /// ISO 4217 code, three upper-case letters.
    pub currency: String,
    pub status: OrderStatus,
    /// RFC 3339 timestamp, e.g. `2025-01-06T09:13:00Z`.
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<u32>,
}

/// Semantic checks a record must pass beyond its serde shape. Returns a list
/// of human-readable problems (empty when the record is fine).
pub(crate) trait RecordCheck {
    fn problems(&self) -> Vec<String>;
}

pub(crate) fn id_well_formed(id: &str, prefix: &str) -> bool {
    match id.strip_prefix(prefix) {
        Some(digits) => digits.len() >= 4 && digits.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

pub(crate) fn email_well_formed(email: &str) -> bool {
    let mut parts = email.split('@');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(local), Some(domain), None) => {
            !local.is_empty()
                && !domain.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(char::is_whitespace)
        }
        _ => false,
    }
}

fn upper_alpha(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_uppercase())
}

fn check_id(out: &mut Vec<String>, field: &str, value: &str, prefix: &str) {
    if !id_well_formed(value, prefix) {
        out.push(format!(
            "field `{field}` is {value:?}, expected {prefix} followed by at least four digits"
        ));
    }
}

fn check_non_empty(out: &mut Vec<String>, field: &str, value: &str) {
    if value.trim().is_empty() {
        out.push(format!("field `{field}` is empty"));
    }
}

fn check_email(out: &mut Vec<String>, value: &str) {
    if !email_well_formed(value) {
        out.push(format!(
            "field `email` is {value:?}, not a valid e-mail address"
        ));
    }
}

impl RecordCheck for Employee {
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        check_id(&mut out, "id", &self.id, "EMP-");
        check_non_empty(&mut out, "name", &self.name);
        check_email(&mut out, &self.email);
        check_non_empty(&mut out, "department", &self.department);
        check_non_empty(&mut out, "role", &self.role);
        if let Some(m) = &self.manager_id {
            check_id(&mut out, "manager_id", m, "EMP-");
        }
        out
    }
}

impl RecordCheck for Client {
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        check_id(&mut out, "id", &self.id, "CL-");
        check_non_empty(&mut out, "name", &self.name);
        check_email(&mut out, &self.email);
        check_id(
            &mut out,
            "account_manager_id",
            &self.account_manager_id,
            "EMP-",
        );
        if let Some(c) = &self.country
            && !upper_alpha(c, 2)
        {
            out.push(format!(
                "field `country` is {c:?}, expected an ISO 3166-1 alpha-2 code"
            ));
        }
        out
    }
}

impl RecordCheck for Order {
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        check_id(&mut out, "id", &self.id, "ORD-");
        check_id(&mut out, "client_id", &self.client_id, "CL-");
        check_id(&mut out, "sales_rep_id", &self.sales_rep_id, "EMP-");
        if !self.amount.is_finite() || self.amount < 0.0 {
            out.push(format!(
                "field `amount` is {}, expected a finite non-negative number",
                self.amount
            ));
        }
        if !upper_alpha(&self.currency, 3) {
            out.push(format!(
                "field `currency` is {:?}, expected an ISO 4217 code",
                self.currency
            ));
        }
        out
    }
}
