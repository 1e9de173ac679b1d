//! Fixed vocabulary of the simulated site: statuses, issue types, priorities, permissions, names.
//!
//! Everything here is constant so that generated data refers to entries by small indices and
//! stays compact in memory; responses look the entries up when they are rendered.

/// 2026-01-01T00:00:00Z in epoch milliseconds. Generated timestamps lie in the two years before
/// this fixed instant, so the same seed yields the same data whatever day the simulator runs.
pub(crate) const ANCHOR_MS: i64 = 1_767_225_600_000;
pub(crate) const DAY_MS: i64 = 86_400_000;
pub(crate) const FIRST_ISSUE_ID: i64 = 10_001;
pub(crate) const FIRST_PROJECT_ID: i64 = 10_000;
pub(crate) const FIRST_AUDIT_ID: i64 = 10_000;

/// A status category: numeric id, key, display name, colour.
pub(crate) struct Category {
    pub id: i64,
    pub key: &'static str,
    pub name: &'static str,
    pub color: &'static str,
}

pub(crate) const CATEGORIES: [Category; 3] = [
    Category {
        id: 2,
        key: "new",
        name: "To Do",
        color: "blue-gray",
    },
    Category {
        id: 4,
        key: "indeterminate",
        name: "In Progress",
        color: "yellow",
    },
    Category {
        id: 3,
        key: "done",
        name: "Done",
        color: "green",
    },
];

/// A workflow status: string id, name, index into `CATEGORIES`, generation weight.
pub(crate) struct Status {
    pub id: &'static str,
    pub name: &'static str,
    pub category: usize,
    pub weight: u32,
}

pub(crate) const STATUSES: [Status; 5] = [
    Status {
        id: "10000",
        name: "To Do",
        category: 0,
        weight: 25,
    },
    Status {
        id: "3",
        name: "In Progress",
        category: 1,
        weight: 20,
    },
    Status {
        id: "10001",
        name: "In Review",
        category: 1,
        weight: 10,
    },
    Status {
        id: "10002",
        name: "Done",
        category: 2,
        weight: 40,
    },
    Status {
        id: "10003",
        name: "Won't Do",
        category: 2,
        weight: 5,
    },
];

/// An issue type: id, name, subtask flag, hierarchy level, generation weight.
pub(crate) struct IssueType {
    pub id: &'static str,
    pub name: &'static str,
    pub subtask: bool,
    pub level: i64,
    pub weight: u32,
}

pub(crate) const TYPE_TASK: u8 = 0;
pub(crate) const TYPE_EPIC: u8 = 3;
pub(crate) const TYPE_SUBTASK: u8 = 4;

pub(crate) const ISSUE_TYPES: [IssueType; 5] = [
    IssueType {
        id: "10001",
        name: "Task",
        subtask: false,
        level: 0,
        weight: 35,
    },
    IssueType {
        id: "10002",
        name: "Bug",
        subtask: false,
        level: 0,
        weight: 25,
    },
    IssueType {
        id: "10003",
        name: "Story",
        subtask: false,
        level: 0,
        weight: 25,
    },
    IssueType {
        id: "10000",
        name: "Epic",
        subtask: false,
        level: 1,
        weight: 5,
    },
    IssueType {
        id: "10004",
        name: "Sub-task",
        subtask: true,
        level: -1,
        weight: 10,
    },
];

pub(crate) const PRIORITIES: [(&str, &str); 5] = [
    ("1", "Highest"),
    ("2", "High"),
    ("3", "Medium"),
    ("4", "Low"),
    ("5", "Lowest"),
];

pub(crate) const RESOLUTIONS: [(&str, &str); 4] = [
    ("10000", "Done"),
    ("10001", "Won't Do"),
    ("10002", "Duplicate"),
    ("10003", "Cannot Reproduce"),
];

/// A permission known to `/mypermissions`: key, id, name, type, and whether only admins hold it.
pub(crate) struct Permission {
    pub key: &'static str,
    pub id: &'static str,
    pub name: &'static str,
    pub kind: &'static str,
    pub admin_only: bool,
}

pub(crate) const PERMISSIONS: [Permission; 9] = [
    Permission {
        key: "ADMINISTER",
        id: "0",
        name: "Administer Jira",
        kind: "GLOBAL",
        admin_only: true,
    },
    Permission {
        key: "SYSTEM_ADMIN",
        id: "44",
        name: "Jira System Administrators",
        kind: "GLOBAL",
        admin_only: true,
    },
    Permission {
        key: "USER_PICKER",
        id: "27",
        name: "Browse users and groups",
        kind: "GLOBAL",
        admin_only: true,
    },
    Permission {
        key: "BROWSE_PROJECTS",
        id: "10",
        name: "Browse Projects",
        kind: "PROJECT",
        admin_only: false,
    },
    Permission {
        key: "ADMINISTER_PROJECTS",
        id: "23",
        name: "Administer Projects",
        kind: "PROJECT",
        admin_only: true,
    },
    Permission {
        key: "CREATE_ISSUES",
        id: "11",
        name: "Create Issues",
        kind: "PROJECT",
        admin_only: false,
    },
    Permission {
        key: "EDIT_ISSUES",
        id: "12",
        name: "Edit Issues",
        kind: "PROJECT",
        admin_only: false,
    },
    Permission {
        key: "WORK_ON_ISSUES",
        id: "20",
        name: "Work On Issues",
        kind: "PROJECT",
        admin_only: false,
    },
    Permission {
        key: "VIEW_DEV_TOOLS",
        id: "29",
        name: "View Development Tools",
        kind: "PROJECT",
        admin_only: false,
    },
];

/// Live project templates: key, name, project type. Projects beyond this list get made-up keys.
pub(crate) const PROJECTS: [(&str, &str, &str); 30] = [
    ("OPS", "Operations", "software"),
    ("WEB", "Website", "software"),
    ("HR", "People Ops", "business"),
    ("SUP", "Customer Support", "service_desk"),
    ("APP", "Mobile App", "software"),
    ("DATA", "Data Platform", "software"),
    ("SEC", "Security", "software"),
    ("MKT", "Marketing", "business"),
    ("FIN", "Finance", "business"),
    ("INFRA", "Infrastructure", "software"),
    ("QA", "Quality Assurance", "software"),
    ("DOCS", "Documentation", "business"),
    ("SALES", "Sales", "business"),
    ("LEGAL", "Legal", "business"),
    ("DES", "Design", "software"),
    ("API", "Public API", "software"),
    ("CORE", "Core Services", "software"),
    ("PLAT", "Platform", "software"),
    ("BI", "Business Intelligence", "software"),
    ("IT", "IT Help Desk", "service_desk"),
    ("ML", "Machine Learning", "software"),
    ("PAY", "Payments", "software"),
    ("SRCH", "Search", "software"),
    ("GROW", "Growth", "business"),
    ("REL", "Release Engineering", "software"),
    ("CX", "Customer Experience", "service_desk"),
    ("PROC", "Procurement", "business"),
    ("EDU", "Training", "business"),
    ("NET", "Networking", "software"),
    ("UX", "User Research", "software"),
];

pub(crate) const ARCHIVED_PROJECT: (&str, &str, &str) = ("ARC", "Archive 2019", "software");

pub(crate) const PROJECT_CATEGORIES: [(&str, &str); 3] = [
    ("10000", "Engineering"),
    ("10001", "Business"),
    ("10002", "Support"),
];

pub(crate) const COMPONENTS: [&str; 6] = [
    "Backend",
    "Frontend",
    "Database",
    "Billing",
    "Auth",
    "Reporting",
];

pub(crate) const FIRST_NAMES: [&str; 24] = [
    "Dana", "Alex", "Sam", "Priya", "Chen", "Fatima", "Lukas", "Maria", "Kenji", "Olu", "Ines",
    "Noah", "Zoë", "Mateo", "Aiko", "Björn", "Leila", "Tomás", "Grace", "Ravi", "Elena", "Omar",
    "Hana", "Jonas",
];

pub(crate) const LAST_NAMES: [&str; 20] = [
    "Kowalski", "Nguyen", "Okafor", "Schmidt", "García", "Tanaka", "Smith", "Haddad", "Ivanova",
    "Müller", "Rossi", "Dubois", "Andersen", "Silva", "Khan", "O'Brien", "Park", "Novak", "Lopez",
    "Yilmaz",
];

pub(crate) const APP_NAMES: [&str; 6] = [
    "Automation for Jira",
    "Slack",
    "GitHub for Jira",
    "Rovo Agent",
    "Zapier",
    "Jira Service Bot",
];

pub(crate) const TIME_ZONES: [&str; 10] = [
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Europe/London",
    "Asia/Kolkata",
    "America/Sao_Paulo",
    "Pacific/Auckland",
    "UTC",
];

pub(crate) const LOCALES: [&str; 6] = ["en_US", "en_GB", "de_DE", "fr_FR", "ja_JP", "pt_BR"];

pub(crate) const VERBS: [&str; 10] = [
    "Fix",
    "Add",
    "Update",
    "Investigate",
    "Refactor",
    "Remove",
    "Document",
    "Migrate",
    "Improve",
    "Review",
];

pub(crate) const OBJECTS: [&str; 14] = [
    "login page",
    "billing export",
    "search index",
    "CI pipeline",
    "user profile",
    "audit trail",
    "API rate limiting",
    "dashboard widgets",
    "email templates",
    "payment webhook",
    "café menu encoding",
    "naïve date parsing",
    "日本語 translations",
    "\"quoted\" CSV import",
];

pub(crate) const QUALIFIERS: [&str; 8] = [
    "",
    "for mobile",
    "in staging",
    "after upgrade",
    "for EU customers",
    "(follow-up)",
    "— urgent",
    "before release ✓",
];

pub(crate) const LABELS: [&str; 8] = [
    "backend",
    "frontend",
    "tech-debt",
    "security",
    "customer",
    "regression",
    "perf",
    "ux",
];

/// Audit kinds: category, summary, object type name.
pub(crate) const AUDIT_KINDS: [(&str, &str, &str); 7] = [
    ("user management", "User added to group", "USER"),
    ("user management", "User created", "USER"),
    ("group management", "Group created", "GROUP"),
    ("projects", "Project updated", "PROJECT"),
    ("permissions", "Permission scheme updated", "SCHEME"),
    ("workflows", "Workflow updated", "WORKFLOW"),
    ("fields", "Custom field created", "CUSTOM_FIELD"),
];

pub(crate) const GROUPS: [&str; 4] = [
    "jira-admins",
    "jira-software-users",
    "site-admins",
    "developers",
];
