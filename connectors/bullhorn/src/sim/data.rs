//! Deterministic data generator: the same seed and sizes always give the same records, byte for byte.
//!
//! It fills every simulated type in a fixed order from one `ChaCha8Rng` (CorporateUser, Category, Skill,
//! ClientCorporation, ClientContact, JobOrder, Candidate), so references always point at existing records.
//! Values aim at what a staffing CRM really holds: names in Latin, CJK, Cyrillic, Arabic, Devanagari, Hangul and
//! Greek scripts; partial addresses; HTML job descriptions; multi-kilobyte resumes; and a configurable share of
//! dirty records (no email, duplicate email, malformed phone, zero-width and right-to-left characters, emoji,
//! padded values, salary 0 or negative, a few ~100 KB texts). Timestamps are fixed in 2023-2025 (never
//! derived from the wall clock, which would break determinism) and a `tie_share` of records comes from bulk
//! imports that stamp thousands of records with the same `dateLastModified` millisecond — the case that breaks
//! naive `dateLastModified` cursors.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

use super::config::SimConfig;
use super::store::{Db, EntityStore};

/// 2023-01-01T00:00:00Z.
const EPOCH_START: i64 = 1_672_531_200_000;
/// 2025-12-31T00:00:00Z.
const EPOCH_END: i64 = 1_767_139_200_000;

const YEAR_MS: i64 = 365 * 24 * 3_600_000;

/// Name pools by culture: (weight, first names, last names, family name first, Latin script).
struct Culture {
    weight: u32,
    first: &'static [&'static str],
    last: &'static [&'static str],
    family_first: bool,
}

const CULTURES: &[Culture] = &[
    Culture {
        weight: 44,
        first: &[
            "James",
            "Mary",
            "Robert",
            "Patricia",
            "John",
            "Jennifer",
            "Michael",
            "Linda",
            "David",
            "Elizabeth",
            "William",
            "Barbara",
            "Richard",
            "Susan",
            "Joseph",
            "Jessica",
            "Thomas",
            "Sarah",
            "Christopher",
            "Karen",
            "Daniel",
            "Nancy",
            "Matthew",
            "Lisa",
            "Anthony",
            "Emily",
            "Mark",
            "Ashley",
            "Paul",
            "Olivia",
            "Liam",
            "Noah",
            "Ava",
            "Ethan",
            "Mia",
            "Zoe",
            "Aiden",
            "Chloe",
        ],
        last: &[
            "Smith",
            "Johnson",
            "Williams",
            "Brown",
            "Jones",
            "Miller",
            "Davis",
            "Wilson",
            "Anderson",
            "Taylor",
            "Thomas",
            "Moore",
            "Jackson",
            "Martin",
            "Lee",
            "Thompson",
            "White",
            "Harris",
            "Clark",
            "Lewis",
            "Walker",
            "Hall",
            "Young",
            "O'Brien",
            "McAllister",
            "Van der Berg",
            "Smith-Jones",
            "D'Angelo",
        ],
        family_first: false,
    },
    Culture {
        weight: 12,
        first: &[
            "José",
            "María",
            "Lucía",
            "Alejandro",
            "Sofía",
            "Javier",
            "Carmen",
            "Andrés",
            "Inés",
            "Ramón",
        ],
        last: &[
            "García",
            "Fernández",
            "López",
            "Martínez",
            "Sánchez",
            "Pérez",
            "Gómez",
            "Muñoz",
            "Núñez",
            "Ibáñez",
        ],
        family_first: false,
    },
    Culture {
        weight: 8,
        first: &[
            "Jürgen",
            "Günther",
            "Zoë",
            "Chloé",
            "François",
            "Renée",
            "Björn",
            "Søren",
            "Łukasz",
            "Ágnes",
        ],
        last: &[
            "Müller",
            "Schäfer",
            "Dubois",
            "Lefèvre",
            "Østergaard",
            "Nováková",
            "Kowalczyk",
            "Weiß",
            "Ångström",
        ],
        family_first: false,
    },
    Culture {
        weight: 8,
        first: &[
            "伟", "芳", "娜", "秀英", "敏", "静", "强", "磊", "洋", "艳", "晓明", "子涵",
        ],
        last: &["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "欧阳"],
        family_first: true,
    },
    Culture {
        weight: 5,
        first: &["翔太", "陽菜", "蓮", "結衣", "大翔", "さくら", "ゆうき"],
        last: &["佐藤", "鈴木", "高橋", "田中", "渡辺", "伊藤"],
        family_first: true,
    },
    Culture {
        weight: 6,
        first: &[
            "Александр",
            "Мария",
            "Дмитрий",
            "Анна",
            "Сергей",
            "Елена",
            "Иван",
            "Ольга",
            "Наталья",
        ],
        last: &[
            "Иванов",
            "Смирнов",
            "Кузнецов",
            "Попов",
            "Соколов",
            "Лебедев",
            "Козлова",
            "Новикова",
        ],
        family_first: false,
    },
    Culture {
        weight: 5,
        first: &[
            "محمد",
            "فاطمة",
            "أحمد",
            "علي",
            "مريم",
            "يوسف",
            "ليلى",
            "Omar",
            "Layla",
        ],
        last: &[
            "الحسن",
            "العلي",
            "الخطيب",
            "حداد",
            "منصور",
            "Haddad",
            "Al-Sayed",
        ],
        family_first: false,
    },
    Culture {
        weight: 7,
        first: &[
            "आरव",
            "अनन्या",
            "Priya",
            "Rahul",
            "Aditya",
            "Sneha",
            "Vikram",
            "Lakshmi",
        ],
        last: &[
            "Sharma",
            "Patel",
            "Singh",
            "Gupta",
            "शर्मा",
            "Reddy",
            "Iyer",
            "Venkataraman",
        ],
        family_first: false,
    },
    Culture {
        weight: 2,
        first: &["민준", "서연", "지후", "하은"],
        last: &["김", "이", "박", "최"],
        family_first: true,
    },
    Culture {
        weight: 1,
        first: &["Γιώργος", "Μαρία", "Νίκος"],
        last: &["Παπαδόπουλος", "Οικονόμου"],
        family_first: false,
    },
    Culture {
        weight: 2,
        first: &["Văn Minh", "Thị Lan", "Quốc Anh"],
        last: &["Nguyễn", "Trần", "Lê", "Phạm"],
        family_first: true,
    },
];

const DOMAINS: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "proton.me",
    "icloud.com",
    "example.org",
    "mail.ru",
    "qq.com",
    "web.de",
    "yandex.ru",
    "orange.fr",
];

/// (city, state, zip, countryCode, countryName, countryID)
const PLACES: &[(&str, &str, &str, &str, &str, i64)] = &[
    ("Boston", "MA", "02108", "US", "United States", 1),
    ("Chicago", "IL", "60601", "US", "United States", 1),
    ("Austin", "TX", "73301", "US", "United States", 1),
    ("San Francisco", "CA", "94105", "US", "United States", 1),
    ("New York", "NY", "10001", "US", "United States", 1),
    ("Seattle", "WA", "98101", "US", "United States", 1),
    ("Denver", "CO", "80202", "US", "United States", 1),
    ("Atlanta", "GA", "30303", "US", "United States", 1),
    ("Omaha", "NE", "68124", "US", "United States", 1),
    ("St. Louis", "MO", "63101", "US", "United States", 1),
    ("London", "", "EC1A 1BB", "GB", "United Kingdom", 2359),
    ("Manchester", "", "M1 1AE", "GB", "United Kingdom", 2359),
    ("Berlin", "", "10115", "DE", "Germany", 2224),
    ("München", "BY", "80331", "DE", "Germany", 2224),
    ("Paris", "", "75001", "FR", "France", 2221),
    ("Toronto", "ON", "M5H 2N2", "CA", "Canada", 2),
    ("Montréal", "QC", "H2Y 1C6", "CA", "Canada", 2),
    ("Sydney", "NSW", "2000", "AU", "Australia", 2206),
    ("Singapore", "", "018956", "SG", "Singapore", 2330),
    ("東京", "東京都", "100-0001", "JP", "Japan", 2258),
    ("上海", "上海市", "200000", "CN", "China", 2214),
    ("Москва", "", "101000", "RU", "Russian Federation", 2316),
    ("Dubai", "", "", "AE", "United Arab Emirates", 2356),
    ("Bengaluru", "KA", "560001", "IN", "India", 2249),
    ("São Paulo", "SP", "01000-000", "BR", "Brazil", 2210),
    ("Ciudad de México", "CDMX", "06000", "MX", "Mexico", 2278),
];

const STREETS: &[&str] = &[
    "Main",
    "Oak",
    "Maple",
    "Elm",
    "Park",
    "Cedar",
    "Washington",
    "Lake",
    "Hill",
    "Church",
];
const STREET_KINDS: &[&str] = &["St", "Ave", "Rd", "Blvd", "Lane", "Street", "Way"];

const SKILLS: &[(&str, usize)] = &[
    ("Java", 0),
    ("Rust", 0),
    ("Python", 0),
    ("Go", 0),
    ("Kubernetes", 0),
    ("AWS", 0),
    ("Azure", 0),
    ("GCP", 0),
    ("SQL", 13),
    ("PostgreSQL", 0),
    ("Kafka", 0),
    ("React", 0),
    ("TypeScript", 0),
    ("Node.js", 0),
    ("C++", 0),
    ("C#", 0),
    (".NET", 0),
    ("Spring Boot", 0),
    ("Django", 0),
    ("Terraform", 0),
    ("Docker", 0),
    ("Linux", 0),
    ("Accounting", 1),
    ("Payroll", 1),
    ("SAP", 1),
    ("Salesforce", 5),
    ("Excel", 11),
    ("Project Management", 19),
    ("Agile", 0),
    ("Scrum", 0),
    ("Nursing", 2),
    ("Phlebotomy", 2),
    ("ICU", 2),
    ("CNC Machining", 4),
    ("Welding", 4),
    ("Forklift", 9),
    ("Customer Service", 12),
    ("B2B Sales", 5),
    ("SEO", 6),
    ("Data Analysis", 13),
    ("Machine Learning", 13),
    ("Pandas", 13),
    ("Spark", 13),
    ("Tableau", 13),
    ("Power BI", 13),
    ("Figma", 14),
    ("UX Research", 14),
    ("Copywriting", 6),
    ("Recruiting", 7),
    ("HR Compliance", 7),
    ("Legal Research", 8),
    ("Contract Law", 8),
    ("Logistics", 9),
    ("Supply Chain", 9),
    ("Six Sigma", 4),
    ("AutoCAD", 3),
    ("Revit", 10),
    ("Electrical", 10),
    ("Plumbing", 10),
    ("HVAC", 10),
    ("Mandarin", 11),
    ("Spanish", 11),
    ("German", 11),
    ("Japanese", 11),
    ("Vault Auditing", 1),
    ("GAAP", 1),
    ("Tax Preparation", 1),
    ("Phone Etiquette", 12),
    ("Event Planning", 16),
    ("Curriculum Design", 15),
    ("Food Safety", 16),
    ("Merchandising", 17),
    ("Lab Techniques", 18),
    ("Budgeting", 19),
    ("Negotiation", 5),
    ("C++/CLI", 0),
    ("Objective-C", 0),
    ("COBOL", 0),
];

const CATEGORIES: &[&str] = &[
    "Information Technology",
    "Finance & Accounting",
    "Healthcare",
    "Engineering",
    "Manufacturing",
    "Sales",
    "Marketing",
    "Human Resources",
    "Legal",
    "Logistics",
    "Construction",
    "Administrative",
    "Customer Support",
    "Data & Analytics",
    "Design",
    "Education",
    "Hospitality",
    "Retail",
    "Science",
    "Executive",
];

const OCCUPATIONS: &[&str] = &[
    "Software Engineer",
    "Data Engineer",
    "DevOps Engineer",
    "Accountant",
    "Registered Nurse",
    "Project Manager",
    "Sales Representative",
    "Marketing Manager",
    "HR Generalist",
    "Paralegal",
    "Warehouse Associate",
    "Electrician",
    "Mechanical Engineer",
    "Business Analyst",
    "UX Designer",
    "Customer Service Representative",
    "Financial Analyst",
    "Machine Operator",
    "Executive Assistant",
    "Data Scientist",
    "QA Engineer",
    "Product Manager",
    "Recruiter",
    "Welder",
    "Site Reliability Engineer",
];
const LEVELS: &[&str] = &[
    "",
    "",
    "Junior ",
    "Senior ",
    "Lead ",
    "Principal ",
    "Staff ",
];

const CAND_STATUS: &[&str] = &[
    "New Lead",
    "Active",
    "Placed",
    "Inactive",
    "Submitted",
    "Interviewing",
    "Passive",
    "DNU",
];
const SOURCES: &[&str] = &[
    "LinkedIn",
    "Indeed",
    "Referral",
    "Website",
    "Job Board",
    "Career Fair",
    "Monster",
    "CareerBuilder",
    "Agency",
];
const EMPLOYMENT: &[&str] = &[
    "Permanent",
    "Contract",
    "Contract To Hire",
    "Temp",
    "Fixed Term",
];
const JOB_STATUS: &[(&str, bool)] = &[
    ("Accepting Candidates", true),
    ("Open", true),
    ("Covered", true),
    ("On Hold", false),
    ("Filled", false),
    ("Closed", false),
    ("Lost", false),
];
const CORP_PREFIX: &[&str] = &[
    "Blue",
    "North",
    "Summit",
    "Pioneer",
    "Apex",
    "Silver",
    "Cedar",
    "Harbor",
    "Iron",
    "Bright",
    "Evergreen",
    "Quantum",
    "Redwood",
    "Granite",
    "Lumen",
    "Atlas",
    "Meridian",
    "Copper",
];
const CORP_NOUN: &[&str] = &[
    "Ridge",
    "Logistics",
    "Health",
    "Analytics",
    "Systems",
    "Foods",
    "Energy",
    "Capital",
    "Robotics",
    "Labs",
    "Retail",
    "Partners",
    "Manufacturing",
    "Media",
    "Pharma",
    "Dynamics",
];
const CORP_SUFFIX: &[&str] = &["Inc.", "LLC", "Ltd.", "GmbH", "Corp.", "Co.", "S.A.", "plc"];
const CORP_INTL: &[&str] = &[
    "上海星辰科技有限公司",
    "株式会社サクラ電機",
    "ООО «Северный Ветер»",
    "شركة الأفق للتقنية",
    "Société Générale de Logiciels",
    "Müller & Söhne GmbH",
    "한빛 소프트 주식회사",
];
const COMPANIES: &[&str] = &[
    "Contoso",
    "Fabrikam",
    "Northwind Traders",
    "Tailspin Toys",
    "Wide World Importers",
    "Adventure Works",
    "Litware",
    "Proseware",
    "Woodgrove Bank",
    "Lucerne Publishing",
    "Alpine Ski House",
    "Coho Winery",
];
const VERBS: &[&str] = &[
    "Led",
    "Built",
    "Designed",
    "Maintained",
    "Migrated",
    "Automated",
    "Improved",
    "Coordinated",
    "Reduced",
    "Launched",
    "Audited",
    "Supervised",
    "Negotiated",
    "Streamlined",
];
const THINGS: &[&str] = &[
    "the billing platform",
    "a patient intake workflow",
    "the data warehouse",
    "quarterly forecasts",
    "a CI/CD pipeline",
    "vendor contracts",
    "the onboarding process",
    "a fleet of 40 forklifts",
    "customer escalations",
    "the payroll system",
    "a microservices architecture",
    "inventory controls",
];

fn pick<'a, T>(rng: &mut ChaCha8Rng, xs: &'a [T]) -> &'a T {
    // Every pool above is a non-empty constant.
    xs.choose(rng).unwrap_or(&xs[0])
}

/// Ids the generated records may reference.
#[derive(Debug, Default, Clone)]
pub struct Refs {
    /// CorporateUser ids (owners).
    pub users: Vec<i64>,
    /// Skill ids with their category id.
    pub skills: Vec<(i64, i64)>,
    /// Category ids.
    pub categories: Vec<i64>,
    /// ClientCorporation ids with their ClientContact ids.
    pub corps: Vec<(i64, Vec<i64>)>,
}

impl Refs {
    /// Collects references from a populated database (used by the change generator).
    pub fn from_db(db: &Db) -> Self {
        let ids = |name: &str| -> Vec<i64> {
            db.store(name)
                .map(|s| s.records.keys().copied().collect())
                .unwrap_or_default()
        };
        let skills = db
            .store("Skill")
            .map(|s| {
                s.records
                    .values()
                    .map(|r| {
                        let cat = r
                            .get("categories")
                            .and_then(|c| c.pointer("/data/0/id"))
                            .and_then(Value::as_i64)
                            .unwrap_or(1);
                        (r.id, cat)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut corps: Vec<(i64, Vec<i64>)> = ids("ClientCorporation")
            .into_iter()
            .map(|c| (c, Vec::new()))
            .collect();
        if let Ok(contacts) = db.store("ClientContact") {
            for r in contacts.records.values() {
                let corp = r
                    .get("clientCorporation")
                    .and_then(|c| c.get("id"))
                    .and_then(Value::as_i64);
                if let Some(entry) = corps.iter_mut().find(|(c, _)| Some(*c) == corp) {
                    entry.1.push(r.id);
                }
            }
        }
        Self {
            users: ids("CorporateUser"),
            skills,
            categories: ids("Category"),
            corps,
        }
    }

    fn owner(&self, rng: &mut ChaCha8Rng) -> i64 {
        // Skewed: a few recruiters own most records, as in real agencies.
        let n = self.users.len().max(1);
        let x: f64 = rng.random();
        let i = ((x * x) * n as f64) as usize;
        self.users.get(i.min(n - 1)).copied().unwrap_or(1)
    }
}

fn to_many(ids: &[i64]) -> Value {
    json!({ "total": ids.len(), "data": ids.iter().map(|id| json!({ "id": id })).collect::<Vec<_>>() })
}

fn ascii_fold(s: &str) -> String {
    s.chars()
        .filter_map(|c| {
            let c = match c {
                'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' | 'Á' | 'Å' => 'a',
                'é' | 'è' | 'ê' | 'ë' | 'É' => 'e',
                'í' | 'ì' | 'î' | 'ï' => 'i',
                'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'ø' | 'Ø' => 'o',
                'ú' | 'ù' | 'û' | 'ü' => 'u',
                'ñ' => 'n',
                'ç' => 'c',
                'ß' => 's',
                'ł' | 'Ł' => 'l',
                'ễ' | 'ệ' => 'e',
                'ă' | 'ạ' => 'a',
                'ố' | 'ồ' => 'o',
                c => c,
            };
            (c.is_ascii_alphanumeric()).then(|| c.to_ascii_lowercase())
        })
        .collect()
}

struct Person {
    first: String,
    last: String,
    name: String,
    latin: bool,
}

fn person(rng: &mut ChaCha8Rng) -> Person {
    let total: u32 = CULTURES.iter().map(|c| c.weight).sum();
    let mut roll = rng.random_range(0..total);
    let mut culture = &CULTURES[0];
    for c in CULTURES {
        if roll < c.weight {
            culture = c;
            break;
        }
        roll -= c.weight;
    }
    let first = pick(rng, culture.first).to_string();
    let last = pick(rng, culture.last).to_string();
    let latin = !ascii_fold(&first).is_empty() && !ascii_fold(&last).is_empty();
    let cjk = culture.family_first && !latin;
    let name = if cjk {
        format!("{last}{first}")
    } else if culture.family_first {
        format!("{last} {first}")
    } else {
        format!("{first} {last}")
    };
    Person {
        first,
        last,
        name,
        latin,
    }
}

fn email_for(rng: &mut ChaCha8Rng, p: &Person, id: i64) -> String {
    let local = if p.latin {
        let (f, l) = (ascii_fold(&p.first), ascii_fold(&p.last));
        match rng.random_range(0..4) {
            0 => format!("{f}.{l}"),
            1 => format!("{}{l}", &f[..1]),
            2 => format!("{f}{l}{}", rng.random_range(1..99)),
            _ => format!("{f}_{l}"),
        }
    } else {
        format!("user{id}")
    };
    format!("{local}@{}", pick(rng, DOMAINS))
}

fn phone(rng: &mut ChaCha8Rng) -> String {
    let d = |rng: &mut ChaCha8Rng, n: u32| -> String {
        (0..n)
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect()
    };
    match rng.random_range(0..6) {
        0 => format!("+1 ({}) {}-{}", d(rng, 3), d(rng, 3), d(rng, 4)),
        1 => format!("{}-{}-{}", d(rng, 3), d(rng, 3), d(rng, 4)),
        2 => format!("+44 20 {} {}", d(rng, 4), d(rng, 4)),
        3 => format!("+86 1{} {} {}", d(rng, 2), d(rng, 4), d(rng, 4)),
        4 => format!("+7 495 {}-{}-{}", d(rng, 3), d(rng, 2), d(rng, 2)),
        _ => format!("({}) {} {}", d(rng, 3), d(rng, 3), d(rng, 4)),
    }
}

const BAD_PHONES: &[&str] = &[
    "call me",
    "555-12",
    "n/a",
    "0000000000",
    "+1 555 ☎ 1234",
    "ext. 42",
    "12345678901234567890",
    "  555 123 4567  ",
];

fn address(rng: &mut ChaCha8Rng) -> Option<Value> {
    let (city, state, zip, cc, cn, cid) = *pick(rng, PLACES);
    let street = format!(
        "{} {} {}",
        rng.random_range(1..9999),
        pick(rng, STREETS),
        pick(rng, STREET_KINDS)
    );
    // Partial addresses are the norm in CRMs: many records carry only a city or a country.
    Some(match rng.random_range(0..10) {
        0 => return None,
        1 => json!({ "countryID": cid, "countryName": cn, "countryCode": cc }),
        2 => json!({ "city": city, "countryID": cid }),
        3 => {
            json!({ "address1": "", "address2": null, "city": city, "state": state, "zip": null, "countryID": cid, "countryName": cn, "countryCode": cc })
        }
        _ => json!({
            "address1": street,
            "address2": if rng.random_bool(0.2) { Value::from(format!("Suite {}", rng.random_range(100..999))) } else { Value::Null },
            "city": city, "state": state, "zip": zip, "countryID": cid, "countryName": cn, "countryCode": cc
        }),
    })
}

fn sentence(rng: &mut ChaCha8Rng, skills: &[&str]) -> String {
    let skill = skills.choose(rng).copied().unwrap_or("Excel");
    match rng.random_range(0..5) {
        0 => format!(
            "{} {} using {skill}, serving {}k users.",
            pick(rng, VERBS),
            pick(rng, THINGS),
            rng.random_range(1..900)
        ),
        1 => format!(
            "{} {} and cut costs by {}% with {skill}.",
            pick(rng, VERBS),
            pick(rng, THINGS),
            rng.random_range(5..60)
        ),
        2 => format!(
            "Worked with a team of {} on {}; main tools: {skill}.",
            rng.random_range(2..40),
            pick(rng, THINGS)
        ),
        3 => format!(
            "{} {} across {} sites while mentoring {} colleagues.",
            pick(rng, VERBS),
            pick(rng, THINGS),
            rng.random_range(2..12),
            rng.random_range(1..9)
        ),
        _ => format!("Responsible for {}; {skill} certified.", pick(rng, THINGS)),
    }
}

fn resume(
    rng: &mut ChaCha8Rng,
    p: &Person,
    occupation: &str,
    skills: &[&str],
    target_len: usize,
) -> String {
    let html = rng.random_bool(0.3);
    let mut out = String::with_capacity(target_len + 512);
    if html {
        out.push_str(&format!(
            "<html><body><h1>{}</h1><p>{occupation}</p>",
            p.name
        ));
    } else {
        out.push_str(&format!("{}\n{occupation}\n\nSUMMARY\n", p.name));
    }
    let mut year = 2024 - rng.random_range(0..3);
    while out.len() < target_len {
        let company = pick(rng, COMPANIES);
        let span = rng.random_range(1..5);
        if html {
            out.push_str(&format!(
                "<h2>{company}</h2><p>{occupation}, {}&ndash;{year}</p><ul>",
                year - span
            ));
            for _ in 0..rng.random_range(3..7) {
                out.push_str(&format!("<li>{}</li>", sentence(rng, skills)));
            }
            out.push_str("</ul>");
        } else {
            out.push_str(&format!(
                "\n{company} — {occupation} ({}-{year})\n",
                year - span
            ));
            for _ in 0..rng.random_range(3..7) {
                out.push_str(&format!("  • {}\n", sentence(rng, skills)));
            }
        }
        year -= span;
    }
    if html {
        out.push_str(&format!(
            "<h2>Skills</h2><p>{}</p></body></html>",
            skills.join(", ")
        ));
    } else {
        out.push_str(&format!("\nSKILLS\n{}\n", skills.join(", ")));
    }
    out
}

fn job_html(
    rng: &mut ChaCha8Rng,
    title: &str,
    corp: &str,
    skills: &[&str],
    target_len: usize,
) -> String {
    let mut out = format!(
        "<p><strong>{title}</strong> &ndash; {}</p>\n<p style=\"font-family: Arial; font-size: 10pt\">Our client, a leading company in its field, is hiring.&nbsp;Apply today!</p>\n",
        corp.replace('&', "&amp;")
    );
    while out.len() < target_len {
        out.push_str("<h3>Responsibilities</h3>\n<ul>\n");
        for _ in 0..rng.random_range(3..8) {
            out.push_str(&format!("  <li>{}</li>\n", sentence(rng, skills)));
        }
        out.push_str("</ul>\n<h3>Requirements</h3>\n<ul>\n");
        for s in skills {
            out.push_str(&format!(
                "  <li>{} years of {s}</li>\n",
                rng.random_range(1..8)
            ));
        }
        out.push_str("</ul><br>\n");
    }
    out
}

/// Timestamps `(dateAdded, dateLastModified)` for `n` records in id order, with bulk-import ties.
fn timeline(rng: &mut ChaCha8Rng, n: usize, tie_share: f64) -> Vec<(i64, i64)> {
    let tied = ((n as f64) * tie_share).round() as usize;
    // One big import (half of the tied records, so it spans several 500-record pages at scale) plus
    // smaller ones of 20-300 records.
    let mut groups = Vec::new();
    let mut left = tied;
    if left > 0 {
        let big = (tied / 2).max(1);
        groups.push(big);
        left -= big;
    }
    while left > 0 {
        let g = rng.random_range(20..=300).min(left);
        groups.push(g);
        left -= g;
    }
    let singles = n - tied;
    let span = (EPOCH_END - EPOCH_START) as f64;
    let step = span / (n.max(1) as f64);
    let mut t = EPOCH_START as f64;
    let mut out = Vec::with_capacity(n);
    let mut gi = 0;
    let mut singles_left = singles;
    while out.len() < n {
        let groups_left = groups.len() - gi;
        let start_group = groups_left > 0
            && (singles_left == 0
                || rng.random_range(0..(singles_left + groups_left)) < groups_left);
        let ms = t as i64;
        if start_group {
            let g = groups[gi];
            gi += 1;
            for _ in 0..g {
                // A few imported records were touched again later; most keep the import's millisecond.
                let modified = if rng.random_bool(0.05) {
                    ms + rng.random_range(1..YEAR_MS).min(EPOCH_END - ms).max(1)
                } else {
                    ms
                };
                out.push((ms, modified));
            }
            t += step * (g as f64).sqrt();
        } else {
            singles_left -= 1;
            let modified = if rng.random_bool(0.6) {
                ms + rng.random_range(1..=(EPOCH_END - ms).max(2))
            } else {
                ms
            };
            out.push((ms, modified));
            t += step * rng.random_range(0.2..1.8);
        }
        if t > EPOCH_END as f64 - 1.0 {
            t = EPOCH_END as f64 - 1.0;
        }
    }
    out
}

fn salary(rng: &mut ChaCha8Rng) -> f64 {
    (rng.random_range(35..250) * 1000) as f64
}

/// Generates the whole database for `cfg`.
pub fn generate(cfg: &SimConfig) -> Db {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut db = Db::new(cfg.soft_delete_event);
    let mut refs = Refs::default();
    let store = |db: &mut Db, name: &str| -> usize {
        db.stores
            .iter()
            .position(|s| s.def.name == name)
            .unwrap_or(0)
    };

    // CorporateUser: the recruiters owning records.
    let users = store(&mut db, "CorporateUser");
    for id in 1..=25i64 {
        let p = person(&mut rng);
        let email = format!("user{id}@crmflow-staffing.example");
        put(
            &mut db.stores[users],
            json!({
                "id": id, "firstName": p.first, "lastName": p.last, "name": p.name, "email": email,
                "enabled": id != 25, "isDeleted": false, "isLockedOut": false, "occupation": "Recruiter",
                "username": format!("recruiter{id}"), "dateLastModified": EPOCH_START, "timeZoneOffsetEST": 0,
            }),
        );
        refs.users.push(id);
    }

    let cats = store(&mut db, "Category");
    for (i, name) in CATEGORIES.iter().enumerate() {
        let id = i as i64 + 1;
        put(
            &mut db.stores[cats],
            json!({
                "id": id, "name": name, "description": format!("{name} roles"), "enabled": true,
                "dateAdded": EPOCH_START, "dateLastModified": EPOCH_START, "type": "Candidate",
            }),
        );
        refs.categories.push(id);
    }
    let skills = store(&mut db, "Skill");
    for (i, (name, cat)) in SKILLS.iter().enumerate() {
        let id = i as i64 + 1;
        let cat = *cat as i64 + 1;
        put(
            &mut db.stores[skills],
            json!({
                "id": id, "name": name, "enabled": true, "categories": to_many(&[cat]), "dateLastModified": EPOCH_START,
            }),
        );
        refs.skills.push((id, cat));
    }

    // ClientCorporation and their contacts.
    let n_corps = (cfg.job_orders / 8).max(10);
    let corps = store(&mut db, "ClientCorporation");
    let contacts = store(&mut db, "ClientContact");
    let corp_times = timeline(&mut rng, n_corps, 0.0);
    let mut contact_id = 0i64;
    let mut corp_names = Vec::new();
    for (i, (added, modified)) in corp_times.into_iter().enumerate() {
        let id = i as i64 + 1;
        let name = if rng.random_bool(0.1) {
            pick(&mut rng, CORP_INTL).to_string()
        } else {
            format!(
                "{} {} {}",
                pick(&mut rng, CORP_PREFIX),
                pick(&mut rng, CORP_NOUN),
                pick(&mut rng, CORP_SUFFIX)
            )
        };
        let domain = format!(
            "{}.example.com",
            ascii_fold(&name).chars().take(20).collect::<String>()
        );
        let owner = refs.owner(&mut rng);
        put(
            &mut db.stores[corps],
            json!({
                "id": id, "name": name, "status": if rng.random_bool(0.7) { "Active Account" } else { "Prospect" },
                "phone": phone(&mut rng), "companyURL": format!("https://www.{domain}"), "address": address(&mut rng),
                "industryList": pick(&mut rng, CATEGORIES), "numEmployees": rng.random_range(5..50_000),
                "annualRevenue": rng.random_range(1..5000) as f64 * 100_000.0, "owners": to_many(&[owner]),
                "dateAdded": added, "dateLastModified": modified, "companyDescription": format!("<p>{name} is a client since {}.</p>", 2015 + i % 9),
            }),
        );
        let mut ids = Vec::new();
        for _ in 0..rng.random_range(2..=4) {
            contact_id += 1;
            let p = person(&mut rng);
            let local = if p.latin {
                ascii_fold(&p.first)
            } else {
                format!("contact{contact_id}")
            };
            put(
                &mut db.stores[contacts],
                json!({
                    "id": contact_id, "firstName": p.first, "lastName": p.last, "name": p.name,
                    "email": format!("{local}@{domain}"), "phone": phone(&mut rng), "clientCorporation": { "id": id },
                    "owner": { "id": owner }, "occupation": format!("{}Hiring Manager", pick(&mut rng, LEVELS)),
                    "status": "Active", "isDeleted": false, "dateAdded": added, "dateLastModified": modified,
                    "address": address(&mut rng), "type": "Hiring Manager",
                }),
            );
            ids.push(contact_id);
        }
        corp_names.push(name);
        refs.corps.push((id, ids));
    }

    // JobOrder.
    let jobs = store(&mut db, "JobOrder");
    let times = timeline(&mut rng, cfg.job_orders, cfg.tie_share);
    let huge_jobs = (cfg.job_orders / 2500).clamp(1, 10);
    for (i, (added, modified)) in times.into_iter().enumerate() {
        let id = i as i64 + 1;
        let fields = job_order(
            &mut rng,
            &refs,
            &corp_names,
            cfg.dirty_share,
            i < huge_jobs && cfg.dirty_share > 0.0,
        );
        let mut fields = fields;
        fields.insert("id".into(), id.into());
        fields.insert("dateAdded".into(), added.into());
        fields.insert("dateLastModified".into(), modified.into());
        fields.insert(
            "startDate".into(),
            (added + rng.random_range(7..90) * 86_400_000).into(),
        );
        if rng.random_bool(0.03) {
            fields.insert("isDeleted".into(), true.into());
        }
        db.stores[jobs].put(fields);
    }

    // Candidate.
    let cands = store(&mut db, "Candidate");
    let times = timeline(&mut rng, cfg.candidates, cfg.tie_share);
    let huge = (cfg.candidates / 2500).clamp(2, 20);
    let huge_at: Vec<usize> = (0..huge)
        .map(|_| rng.random_range(0..cfg.candidates.max(1)))
        .collect();
    let mut emails: Vec<String> = Vec::new();
    for (i, (added, modified)) in times.into_iter().enumerate() {
        let id = i as i64 + 1;
        let huge_resume = cfg.dirty_share > 0.0 && huge_at.contains(&i);
        let mut fields = candidate(
            &mut rng,
            &refs,
            id,
            cfg.dirty_share,
            huge_resume,
            &mut emails,
        );
        fields.insert("dateAdded".into(), added.into());
        fields.insert("dateLastModified".into(), modified.into());
        fields.insert(
            "dateAvailable".into(),
            (modified + rng.random_range(0..120) * 86_400_000).into(),
        );
        if rng.random_bool(0.03) {
            fields.insert("isDeleted".into(), true.into());
        }
        db.stores[cands].put(fields);
    }
    db.clock = db
        .stores
        .iter()
        .flat_map(|s| s.by_modified.keys().next_back().map(|(m, _)| *m))
        .max()
        .unwrap_or(0);
    db
}

fn put(store: &mut EntityStore, v: Value) {
    if let Value::Object(m) = v {
        store.put(m);
    }
}

fn pick_skills(rng: &mut ChaCha8Rng, refs: &Refs, n: std::ops::Range<usize>) -> Vec<(i64, i64)> {
    let n = rng.random_range(n);
    let mut out: Vec<(i64, i64)> = Vec::new();
    for _ in 0..n {
        let s = *pick(rng, &refs.skills);
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Fields of a new JobOrder (without id and dates).
pub fn job_order(
    rng: &mut ChaCha8Rng,
    refs: &Refs,
    corp_names: &[String],
    dirty: f64,
    huge: bool,
) -> Map<String, Value> {
    let (corp, contacts) = refs
        .corps
        .get(rng.random_range(0..refs.corps.len().max(1)))
        .cloned()
        .unwrap_or((1, vec![1]));
    let contact = contacts.choose(rng).copied().unwrap_or(1);
    let corp_name = corp_names
        .get((corp - 1).max(0) as usize)
        .cloned()
        .unwrap_or_else(|| "Client".into());
    let title = format!("{}{}", pick(rng, LEVELS), pick(rng, OCCUPATIONS));
    let skills = pick_skills(rng, refs, 2..8);
    let skill_names: Vec<&str> = skills
        .iter()
        .filter_map(|(s, _)| SKILLS.get((*s - 1) as usize).map(|x| x.0))
        .collect();
    let (status, open) = *pick(rng, JOB_STATUS);
    let employment = *pick(rng, EMPLOYMENT);
    let hourly = employment == "Contract" || employment == "Temp";
    let mut salary_v = if hourly {
        rng.random_range(20..150) as f64
    } else {
        salary(rng)
    };
    let is_dirty = rng.random_bool(dirty);
    let mut title_v = title.clone();
    if is_dirty {
        match rng.random_range(0..4) {
            0 => salary_v = 0.0,
            1 => salary_v = -(rng.random_range(1..5000) as f64),
            2 => title_v = format!("  {title}  "),
            _ => title_v = format!("{title} \u{200B}(URGENT!!)"),
        }
    }
    let desc_len = if huge {
        100_000
    } else {
        rng.random_range(800..4000)
    };
    let categories: Vec<i64> = skills.iter().map(|(_, c)| *c).take(2).collect();
    let mut m = Map::new();
    let mut set = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    set("title", title_v.into());
    set(
        "description",
        job_html(rng, &title, &corp_name, &skill_names, desc_len).into(),
    );
    set(
        "publicDescription",
        format!(
            "<p>{title} ({employment}) &ndash; {}</p>",
            skill_names.join(", ")
        )
        .into(),
    );
    set("status", status.into());
    set("isOpen", open.into());
    set("employmentType", employment.into());
    set("clientCorporation", json!({ "id": corp }));
    set("clientContact", json!({ "id": contact }));
    set("address", address(rng).unwrap_or(Value::Null));
    set("salary", salary_v.into());
    set(
        "salaryUnit",
        if hourly { "Per Hour" } else { "Per Year" }.into(),
    );
    set(
        "payRate",
        (rng.random_range(2000..9000) as f64 / 100.0).into(),
    );
    set(
        "clientBillRate",
        (rng.random_range(4000..15000) as f64 / 100.0).into(),
    );
    set(
        "skills",
        to_many(&skills.iter().map(|s| s.0).collect::<Vec<_>>()),
    );
    set("skillList", skill_names.join(",").into());
    set("numOpenings", rng.random_range(1..6).into());
    set("isDeleted", false.into());
    set("isPublic", (rng.random_range(-1..=1)).into());
    set("owner", json!({ "id": refs.owner(rng) }));
    set("assignedUsers", to_many(&[refs.owner(rng)]));
    set("categories", to_many(&categories));
    set(
        "onSite",
        pick(rng, &["On-Site", "Remote", "Hybrid"])
            .to_string()
            .into(),
    );
    set("type", rng.random_range(1..4).into());
    set("yearsRequired", rng.random_range(0..11).into());
    set(
        "durationWeeks",
        if hourly { rng.random_range(4..52) } else { 0 }.into(),
    );
    set(
        "hoursPerWeek",
        (*pick(rng, &[40i64, 40, 37, 20, 30])).into(),
    );
    set(
        "benefits",
        pick(
            rng,
            &["Medical, Dental, 401k", "None", "Standard package", ""],
        )
        .to_string()
        .into(),
    );
    set(
        "educationDegree",
        pick(rng, &["Bachelor's", "Master's", "None", "PhD", "Associate"])
            .to_string()
            .into(),
    );
    set("source", pick(rng, SOURCES).to_string().into());
    if !open {
        set(
            "dateClosed",
            (EPOCH_END - rng.random_range(0..YEAR_MS)).into(),
        );
    }
    m
}

/// Fields of a new Candidate (without dates); `emails` collects addresses so dirty records can duplicate one.
pub fn candidate(
    rng: &mut ChaCha8Rng,
    refs: &Refs,
    id: i64,
    dirty: f64,
    huge: bool,
    emails: &mut Vec<String>,
) -> Map<String, Value> {
    let p = person(rng);
    let occupation = format!("{}{}", pick(rng, LEVELS), pick(rng, OCCUPATIONS));
    let primary = pick_skills(rng, refs, 1..9);
    let secondary = pick_skills(rng, refs, 0..4);
    let names: Vec<&str> = primary
        .iter()
        .filter_map(|(s, _)| SKILLS.get((*s - 1) as usize).map(|x| x.0))
        .collect();
    let category = primary.first().map(|s| s.1).unwrap_or(1);
    let mut first = p.first.clone();
    let mut last = p.last.clone();
    let mut name = p.name.clone();
    let mut email: Value = email_for(rng, &p, id).into();
    let mut phone_v: Value = phone(rng).into();
    let mut salary_v = salary(rng);
    let mut occupation_v = occupation.clone();
    if rng.random_bool(dirty) {
        // One or two defects per dirty record.
        for _ in 0..rng.random_range(1..3) {
            match rng.random_range(0..10) {
                0 => email = Value::Null,
                1 => email = "".into(),
                2 => {
                    if let Some(e) = emails.choose(rng) {
                        email = e.clone().into();
                    }
                }
                3 => phone_v = pick(rng, BAD_PHONES).to_string().into(),
                4 => {
                    let mut chars = first.chars();
                    let head = chars.next().map(String::from).unwrap_or_default();
                    first = format!("{head}\u{200B}{}", chars.as_str());
                }
                5 => {
                    last = format!("\u{200F}{last}\u{202E}");
                    name = format!("{first} {last}");
                }
                6 => {
                    salary_v = if rng.random_bool(0.5) {
                        0.0
                    } else {
                        -(rng.random_range(1..90_000) as f64)
                    }
                }
                7 => {
                    name = format!("{}, {}", p.last.to_uppercase(), p.first);
                    email = format!("  {}  ", email.as_str().unwrap_or("").to_uppercase()).into();
                }
                8 => first = format!("{first} 🌸"),
                _ => occupation_v = format!("\u{FEFF}{occupation}\t"),
            }
        }
    }
    if let Some(e) = email.as_str() {
        if !e.trim().is_empty() {
            emails.push(e.trim().to_lowercase());
        }
    }
    let resume_len = if huge {
        100_000
    } else {
        rng.random_range(1500..6000)
    };
    let mut m = Map::new();
    let mut set = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    set("id", id.into());
    set("firstName", first.into());
    set("lastName", last.into());
    if rng.random_bool(0.15) {
        set(
            "middleName",
            pick(rng, &["A.", "Marie", "J", "Lee", "Ann"])
                .to_string()
                .into(),
        );
    }
    set("name", name.into());
    set("email", email);
    if rng.random_bool(0.2) {
        set(
            "email2",
            format!(
                "{}@{}",
                ascii_fold(&p.last).chars().take(8).collect::<String>() + &id.to_string(),
                pick(rng, DOMAINS)
            )
            .into(),
        );
    }
    set("phone", phone_v);
    if rng.random_bool(0.6) {
        set("mobile", phone(rng).into());
    }
    if rng.random_bool(0.2) {
        set("workPhone", phone(rng).into());
    }
    set("address", address(rng).unwrap_or(Value::Null));
    set("status", pick(rng, CAND_STATUS).to_string().into());
    set("source", pick(rng, SOURCES).to_string().into());
    set("occupation", occupation_v.into());
    set("companyName", pick(rng, COMPANIES).to_string().into());
    set("skillSet", names.join(", ").into());
    set(
        "description",
        resume(rng, &p, &occupation, &names, resume_len).into(),
    );
    set(
        "comments",
        pick(
            rng,
            &[
                "",
                "Great culture fit.",
                "Prefers remote <b>only</b>",
                "Do not call before 10am",
                "Relocating in Q3",
            ],
        )
        .to_string()
        .into(),
    );
    set("owner", json!({ "id": refs.owner(rng) }));
    set(
        "primarySkills",
        to_many(&primary.iter().map(|s| s.0).collect::<Vec<_>>()),
    );
    set(
        "secondarySkills",
        to_many(&secondary.iter().map(|s| s.0).collect::<Vec<_>>()),
    );
    set("categories", to_many(&[category]));
    set("category", json!({ "id": category }));
    set("isDeleted", false.into());
    set(
        "employmentPreference",
        pick(rng, EMPLOYMENT).to_string().into(),
    );
    set("salary", salary_v.into());
    set("salaryLow", (salary_v * 0.85).round().into());
    set(
        "hourlyRate",
        (rng.random_range(1500..12000) as f64 / 100.0).into(),
    );
    set("experience", rng.random_range(0..35).into());
    set("willRelocate", rng.random_bool(0.3).into());
    set(
        "preferredContact",
        pick(rng, &["Email", "Phone", "Mobile"]).to_string().into(),
    );
    set("massMailOptOut", rng.random_bool(0.1).into());
    set(
        "educationDegree",
        pick(
            rng,
            &["Bachelor's", "Master's", "High School", "PhD", "Associate"],
        )
        .to_string()
        .into(),
    );
    set(
        "customText1",
        format!("https://www.linkedin.com/in/c{id}").into(),
    );
    for (field, value) in super::custom::candidate_values(id) {
        set(field, value);
    }
    if rng.random_bool(0.5) {
        set(
            "dateOfBirth",
            (EPOCH_START - rng.random_range(20..65) * YEAR_MS).into(),
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_has_ties_and_covers_every_record() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let t = timeline(&mut rng, 2000, 0.3);
        assert_eq!(t.len(), 2000);
        let mut counts = std::collections::HashMap::new();
        for (_, m) in &t {
            *counts.entry(*m).or_insert(0usize) += 1;
        }
        let biggest = counts.values().copied().max().unwrap_or(0);
        assert!(biggest >= 250, "largest tie group {biggest}");
        assert!(t
            .iter()
            .all(|(a, m)| m >= a && *a >= EPOCH_START && *m <= EPOCH_END + YEAR_MS));
    }
}
