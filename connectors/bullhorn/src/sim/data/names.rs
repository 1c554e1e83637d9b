//! People's names: pools by culture (Latin, CJK, Cyrillic, Arabic, Devanagari, Hangul and Greek
//! scripts, weighted as a staffing CRM sees them), the e-mail domains they use, and how a generated
//! person's name and address are put together (family name first where the culture does so; an
//! ASCII-folded local part, or `user<id>` for names with no Latin spelling).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::words::pick;

/// Name pools by culture: (weight, first names, last names, family name first, Latin script).
pub(super) struct Culture {
    pub(super) weight: u32,
    pub(super) first: &'static [&'static str],
    pub(super) last: &'static [&'static str],
    pub(super) family_first: bool,
}

pub(super) const CULTURES: &[Culture] = &[
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

pub(super) const DOMAINS: &[&str] = &[
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

pub(super) fn ascii_fold(s: &str) -> String {
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

pub(super) struct Person {
    pub(super) first: String,
    pub(super) last: String,
    pub(super) name: String,
    pub(super) latin: bool,
}

pub(super) fn person(rng: &mut ChaCha8Rng) -> Person {
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

pub(super) fn email_for(rng: &mut ChaCha8Rng, p: &Person, id: i64) -> String {
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
