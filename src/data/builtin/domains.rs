//! The built-in generator's domains: each a small three-table world (an entity table, an event
//! table referencing it, and an agent table the events also reference), with its own names,
//! categories and value ranges. One spec line per domain, parsed once.

use std::sync::OnceLock;

/// A table of named things with a category column and a numeric attribute.
#[derive(Debug, Clone)]
pub struct Entity {
    pub table: &'static str,
    pub id: &'static str,
    pub singular: &'static str,
    pub plural: &'static str,
    pub names: Vec<&'static str>,
    pub cat_col: &'static str,
    pub cat_noun: &'static str,
    pub cats: Vec<&'static str>,
    pub num_col: &'static str,
    pub num_noun: &'static str,
    pub num_range: (i64, i64),
}

/// The event table: id, entity id, agent id, a measure and a year.
#[derive(Debug, Clone)]
pub struct Event {
    pub table: &'static str,
    pub id: &'static str,
    pub singular: &'static str,
    pub plural: &'static str,
    pub measure_col: &'static str,
    pub measure_noun: &'static str,
    pub range: (i64, i64),
}

/// A table of named agents with one categorical attribute.
#[derive(Debug, Clone)]
pub struct Agent {
    pub table: &'static str,
    pub id: &'static str,
    pub singular: &'static str,
    pub plural: &'static str,
    pub names: Vec<&'static str>,
    pub attr_col: &'static str,
    pub attr_noun: &'static str,
    pub attrs: Vec<&'static str>,
}

#[derive(Debug, Clone)]
pub struct Domain {
    pub name: &'static str,
    pub description: &'static str,
    pub entity: Entity,
    pub event: Event,
    pub agent: Agent,
}

const P1: &str = "John Carter;Maria Lopez;Wei Zhang;Fatima Khan;Liam Murphy;Sofia Rossi;Kenji Sato;Amara Obi;Lucas Meyer;Elena Petrova;Diego Ramos;Hannah Cole;Arjun Mehta;Grace Kim";
const P2: &str = "Alice Brown;Bob Green;Carol White;David Black;Eva Stone;Frank Moore;Grace Hall;Henry Ford;Irene Cruz;Jack Reed;Karen Lane;Leo Park;Nora Wells;Paul Quinn";
const P3: &str = "Tom Hill;Ana Silva;Raj Singh;Mia Wong;Omar Haddad;Lena Fischer;Yuki Tanaka;Carlos Ruiz;Ines Costa;Ivan Novak;Zara Ali;Ben Carter;Chloe Martin;Sven Larsen";

/// name | description | entity table,id,singular,plural | names | cat col,noun: values |
/// num col,noun,lo,hi | event table,id,singular,plural | measure col,noun,lo,hi |
/// agent table,id,singular,plural | names (or @P1..@P3) | attr col,noun: values
const SPEC: &str = "\
forestry|Comprehensive data on sustainable forest management, timber production, wildlife habitat, and carbon sequestration in forestry.|forests,forest_id,forest,forests|Green Valley;Pine Ridge;Oak Hollow;Cedar Creek;Maple Grove;Birch Hill;Redwood Park|region,region:North;South;East;West|area,area in hectares,100,5000|timber_sales,sale_id,timber sale,timber sales|volume,volume of timber,50,900|buyers,buyer_id,buyer,buyers|Acme Timber;Northwood Mills;Summit Lumber;River Paper;Oakline Builders;Evergreen Supply|country,country:Canada;USA;Mexico;Brazil
healthcare|Hospital operations, patient admissions, treatment costs, and physician staffing across healthcare providers.|hospitals,hospital_id,hospital,hospitals|St Mary;General City;Lakeside;Riverside;Mercy;Unity Care;Hillcrest;Valley Health;Bayview;Summit;Northgate;Cedars|state,state:California;Texas;New York;Florida;Ohio;Georgia;Illinois;Oregon;Arizona;Nevada|beds,number of beds,50,900|admissions,admission_id,admission,admissions|cost,admission cost,500,20000|physicians,physician_id,physician,physicians|Dr Smith;Dr Lee;Dr Patel;Dr Garcia;Dr Chen;Dr Okafor;Dr Novak;Dr Rossi;Dr Kim;Dr Haddad;Dr Silva;Dr Brown|specialty,specialty:Cardiology;Oncology;Pediatrics;Surgery;Neurology;Radiology;Dermatology;Psychiatry
retail|Store performance, sales transactions, customer loyalty, and inventory in retail chains.|stores,store_id,store,stores|Downtown;Mall Plaza;Airport;Harbor View;Uptown;Westside;Eastgate;Northpoint;Riverfront;Old Town;Southpark;Lakeview|city,city:Chicago;Boston;Seattle;Denver;Austin;Miami;Dallas;Phoenix;Portland;Atlanta|floor_space,floor space,200,3000|sales,sale_id,sale,sales|amount,sales amount,10,2000|customers,customer_id,customer,customers|@P2|membership,membership level:Gold;Silver;Bronze;Platinum;Basic;Premium;Student;Family
education|School enrollment, funding grants, student outcomes, and district-level education data.|schools,school_id,school,schools|Lincoln High;Roosevelt Academy;Jefferson Middle;Washington Prep;Kennedy High;Adams Elementary;Franklin School;Madison High;Monroe Academy;Hamilton Middle;Grant Elementary;Carver Prep|district,district:District A;District B;District C;District D;District E;District F;District G;District H|students,number of students,150,2000|grants,grant_id,grant,grants|amount,grant amount,1000,50000|funders,funder_id,funder,funders|Gates Trust;Hope Fund;Bright Futures;Learning Alliance;City Council;Tech Giving;Open Minds;Star Foundation;Civic Fund;Future Scholars;River Trust;Unity Grants|funder_type,funder type:Foundation;Government;Corporate;Nonprofit;University;Individual;Trust;Church
energy|Power generation capacity, energy output, and plant operators in renewable and conventional energy.|power_plants,plant_id,power plant,power plants|Sunrise Solar;Windy Ridge;Blue River Hydro;Coal Creek;Desert Sun;Coastal Wind;Mountain Hydro|source,energy source:Solar;Wind;Hydro;Coal|capacity,capacity in MW,10,1500|production,production_id,production record,production records|output,energy output in MWh,100,9000|operators,operator_id,operator,operators|GreenPower Inc;VoltCo;EnerGen;BrightGrid;NovaEnergy;PowerOne|country,country:Germany;Spain;USA;India
agriculture|Farm production, crop yields, harvest records, and agricultural cooperatives.|farms,farm_id,farm,farms|Sunny Acres;Green Pastures;Golden Fields;Willow Farm;Meadowbrook;Hilltop Farm;River Bend;Oak Ranch;Clover Farm;Prairie View;Maple Farm;Stony Creek|crop,main crop:Corn;Wheat;Soybean;Rice;Barley;Cotton;Oats;Potato;Sorghum;Canola|acreage,acreage,20,800|harvests,harvest_id,harvest,harvests|yield,yield in tons,5,400|cooperatives,coop_id,cooperative,cooperatives|Valley Coop;Prairie Growers;Heartland Coop;Delta Farmers;Plains United;Orchard Alliance;Harvest Union;Green Coop;Farmers First;River Growers;Sunbelt Coop;North Growers|region,region:Midwest;South;West;Northeast;Southwest;Northwest;Southeast;Plains
banking|Bank branches, loan portfolios, client risk profiles, and lending activity.|branches,branch_id,branch,branches|Main Street;Central;Lakeshore;Park Avenue;Hillside;Market Square;Riverside;Kings Road;Old Bridge;Harbor Point;Station Square;Elm Grove|city,city:London;Paris;Berlin;Madrid;Rome;Vienna;Dublin;Lisbon;Prague;Zurich|employees,number of employees,5,80|loans,loan_id,loan,loans|amount,loan amount,1000,50000|clients,client_id,client,clients|@P1|risk_level,risk level:Low;Medium;High;Very Low;Very High;Moderate;Elevated;Minimal
public transportation|Transit routes, ridership, trips, and driver scheduling for public transportation systems.|bus_routes,route_id,bus route,bus routes|Blue Line;Red Line;Green Line;Orange Line;Purple Line;Yellow Line;Silver Line|city,city:Boston;Atlanta;Denver;Portland|length_km,route length in km,5,60|trips,trip_id,trip,trips|passengers,number of passengers,10,300|drivers,driver_id,driver,drivers|@P3|shift,shift:Morning;Evening;Night
real estate|Property listings, lease agreements, rents, and tenant information in real estate markets.|properties,property_id,property,properties|Ocean View;Maple Court;Sunset Villas;Park Place;Cedar Heights;Lakeside Lofts;Harbor House|city,city:Miami;Austin;Seattle;Phoenix|price,price,100000,900000|leases,lease_id,lease,leases|rent,monthly rent,800,5000|tenants,tenant_id,tenant,tenants|@P2|occupation,occupation:Engineer;Teacher;Nurse;Designer
sports|Team statistics, game attendance, leagues, and sponsorship deals in professional sports.|teams,team_id,team,teams|Eagles;Tigers;Sharks;Wolves;Falcons;Bears;Lions;Hawks;Panthers;Ravens;Bulls;Comets|league,league:East;West;Central;North;South;Pacific;Atlantic;Midwest|stadium_capacity,stadium capacity,10000,80000|games,game_id,game,games|attendance,attendance,5000,70000|sponsors,sponsor_id,sponsor,sponsors|SportCo;FitWear;ProDrink;MaxGear;Velocity;Champion Foods;Peak Energy;Stride;Orbit Bank;Titan Tech;Glide;Apex Motors|industry,industry:Apparel;Beverage;Technology;Finance;Automotive;Food;Energy;Telecom
music|Artist popularity, streaming counts, genres, and platform distribution in the music industry.|artists,artist_id,artist,artists|The Echoes;Luna Ray;Midnight Trio;DJ Pulse;Silver Strings;Nova Blue;Red Harbor;Velvet Sky;Iron Bloom;Kira Vale;Solar Kids;Paper Moons|genre,genre:Rock;Pop;Jazz;Electronic;Blues;Country;Classical;Reggae;Folk;Metal|monthly_listeners,monthly listeners,1000,90000|streams,stream_id,streaming record,streaming records|stream_count,number of streams,100,50000|platforms,platform_id,platform,platforms|Spotify;Apple Music;Tidal;Deezer;Pandora;SoundCloud;Amazon Music;YouTube Music;Napster;Qobuz;Anghami;Audiomack|region,region:Europe;North America;Asia;Africa;Oceania;South America;Middle East;Caribbean
hospitality|Hotel capacity, bookings, revenue, and guest loyalty in the hospitality sector.|hotels,hotel_id,hotel,hotels|Grand Plaza;Seaside Inn;Mountain Lodge;City Suites;Royal Palm;Harbor Hotel;Garden Resort|country,country:France;Italy;Spain;Greece|rooms,number of rooms,20,500|bookings,booking_id,booking,bookings|revenue,booking revenue,100,5000|guests,guest_id,guest,guests|@P1|loyalty_tier,loyalty tier:Platinum;Gold;Standard
logistics|Warehouse capacity, shipments, carriers, and freight movements in supply chain logistics.|warehouses,warehouse_id,warehouse,warehouses|Hub North;Hub South;Central Depot;Port Terminal;Inland Yard;Airport Cargo;East Depot|country,country:USA;Germany;China;Brazil|capacity,storage capacity,1000,20000|shipments,shipment_id,shipment,shipments|weight,shipment weight in kg,50,5000|carriers,carrier_id,carrier,carriers|FastFreight;BlueLine Cargo;Global Express;SwiftShip;OceanLink;TransAir|mode,transport mode:Road;Sea;Air
telecommunications|Subscriber plans, data usage, network towers, and service coverage in telecommunications.|subscribers,subscriber_id,subscriber,subscribers|Nina Park;Oscar Reyes;Priya Das;Quinn Adams;Rosa Diaz;Sam Turner;Tara Bell|plan,plan type:Prepaid;Postpaid;Business|data_limit,monthly data limit in GB,5,100|data_usage,usage_id,usage record,usage records|data_used,data used in GB,1,90|towers,tower_id,tower,towers|Tower A;Tower B;Tower C;Tower D;Tower E;Tower F|city,city:Dallas;Houston;Austin
marine biology|Marine species, ocean habitats, sightings, and research expeditions in marine biology.|marine_species,species_id,marine species,marine species|Blue Whale;Clownfish;Green Turtle;Great White Shark;Manta Ray;Sea Otter;Octopus|ocean,ocean:Pacific;Atlantic;Indian;Southern|avg_depth,average depth,5,3000|sightings,sighting_id,sighting,sightings|individuals,number of individuals,1,120|research_teams,team_id,research team,research teams|Ocean Watch;Blue Planet Lab;Reef Survey;Deep Sea Unit;Coastal Monitor;Marine Census|country,country:Australia;Japan;Chile;Norway
mining|Mine sites, mineral extraction volumes, workforce, and contractors in the mining industry.|mines,mine_id,mine,mines|Iron Peak;Copper Ridge;Gold Hollow;Silver Creek;Coal Basin;Nickel Point;Zinc Valley|mineral,mineral:Iron;Copper;Gold;Coal|workforce,number of workers,20,900|extractions,extraction_id,extraction,extractions|quantity,quantity extracted in tons,100,9000|contractors,contractor_id,contractor,contractors|@P3|country,country:Chile;Australia;Canada;Peru
nonprofit|Charitable programs, donations, donor demographics, and budgets of nonprofit organizations.|programs,program_id,program,programs|Food Bank;Literacy First;Clean Water;Youth Mentors;Health Outreach;Green Streets;Shelter Plus|cause,cause:Hunger;Education;Health;Environment|budget,budget,5000,90000|donations,donation_id,donation,donations|amount,donation amount,10,5000|donors,donor_id,donor,donors|@P2|country,country:USA;UK;Canada;India
cybersecurity|Server inventory, security incidents, downtime, and analyst assignments in cybersecurity operations.|servers,server_id,server,servers|web01;db01;mail01;app01;auth01;backup01;proxy01|department,department:IT;Finance;HR;Sales|risk_score,risk score,1,100|incidents,incident_id,security incident,security incidents|downtime_minutes,downtime in minutes,5,600|analysts,analyst_id,analyst,analysts|@P1|team,team:Red Team;Blue Team;SOC
automotive|Car models, vehicle sales, dealer networks, and powertrain types in the automotive industry.|car_models,model_id,car model,car models|Model S;Civic;Corolla;Mustang;Leaf;Golf;Outback|fuel_type,fuel type:Electric;Gasoline;Hybrid|horsepower,horsepower,90,700|vehicle_sales,sale_id,vehicle sale,vehicle sales|units,units sold,10,900|dealers,dealer_id,dealer,dealers|AutoNation;City Motors;Prime Cars;DriveNow;Metro Auto;Sunset Dealers|state,state:California;Texas;Ohio;Florida
aerospace|Aircraft models, flight operations, distances, and airline fleets in aerospace.|aircraft,aircraft_id,aircraft,aircraft|A320;B737;A350;B787;E190;CRJ900;ATR72;A220;B777;E175;A380;Q400|manufacturer,manufacturer:Airbus;Boeing;Embraer;Bombardier;Comac;Cessna;Dassault;Mitsubishi|seats,number of seats,50,400|flights,flight_id,flight,flights|distance,flight distance in km,200,12000|airlines,airline_id,airline,airlines|SkyJet;AirNova;BlueWings;TransGlobal;SunAir;NorthStar;JetStream;Horizon Air;Polar Air;Coastal Jet;Zenith Air;Aero Link|country,country:USA;France;Brazil;Japan;Canada;Germany;India;Mexico;Spain;Kenya
gaming|Video game catalog, player sessions, play time, and player demographics in gaming.|video_games,game_id,video game,video games|Star Quest;Pixel Racer;Dungeon Lords;Sky Battle;Farm Life;Puzzle Pop;Zombie Run|genre,genre:Action;Puzzle;Strategy;Simulation|price,price,5,70|game_sessions,session_id,game session,game sessions|duration,session duration in minutes,5,300|players,player_id,player,players|ShadowFox;PixelQueen;NoobMaster;StarLord;BlueMage;IronFist|country,country:USA;Korea;Brazil;Germany
fashion|Garment catalog, materials, sales volumes, and sustainable suppliers in the fashion industry.|garments,garment_id,garment,garments|Linen Shirt;Denim Jacket;Wool Coat;Silk Dress;Cotton Tee;Cargo Pants;Rain Parka|material,material:Cotton;Wool;Silk;Polyester|price,price,15,400|garment_sales,sale_id,garment sale,garment sales|quantity,quantity sold,1,300|suppliers,supplier_id,supplier,suppliers|EcoThreads;FabricWorks;SilkRoad Co;TextilePro;GreenLoom;UrbanWeave|country,country:India;Bangladesh;Italy;Vietnam
media|News outlets, published articles, readership, and journalist beats in the media industry.|news_outlets,outlet_id,news outlet,news outlets|Daily Herald;Morning Post;City Times;Global News;Evening Star;Tribune;Observer|country,country:USA;UK;Canada;Australia|staff,number of journalists,10,500|articles,article_id,article,articles|views,number of views,100,90000|authors,author_id,author,authors|@P3|beat,beat:Politics;Sports;Science;Culture
pharmaceuticals|Drug portfolios, clinical trials, participants, and research sites in pharmaceuticals.|drugs,drug_id,drug,drugs|Zentrol;Amoxil;Cardiex;Neurova;Pulmex;Dermacort;Glucobal|therapeutic_area,therapeutic area:Oncology;Cardiology;Neurology;Diabetes|price,price per unit,5,900|clinical_trials,trial_id,clinical trial,clinical trials|participants,number of participants,20,3000|research_sites,site_id,research site,research sites|Boston Clinic;Berlin Institute;Tokyo Research;Madrid Center;Toronto Lab;Sydney Hub|country,country:USA;Germany;Japan;Spain
water resources|Reservoir capacity, water withdrawals, utilities, and usage sectors in water resource management.|reservoirs,reservoir_id,reservoir,reservoirs|Lake Mead;Blue Basin;Clearwater;Stone Dam;Silver Lake;Eagle Reservoir;Pine Pond|state,state:Nevada;Arizona;Utah;Colorado|capacity,capacity in million liters,100,9000|withdrawals,withdrawal_id,water withdrawal,water withdrawals|volume,volume withdrawn in million liters,5,800|utilities,utility_id,utility,utilities|City Water;Valley Utility;Desert Supply;Metro Water;County Works;AquaServe|sector,sector:Residential;Industrial;Agricultural
construction|Construction projects, labor hours, budgets, and subcontractor specialties.|projects,project_id,construction project,construction projects|Harbor Bridge;City Tower;Green Mall;North Tunnel;Skyline Plaza;Metro Station;River Dam|project_type,project type:Residential;Commercial;Infrastructure|budget,budget in thousands,100,9000|work_logs,log_id,work log,work logs|hours,labor hours,8,400|subcontractors,subcontractor_id,subcontractor,subcontractors|BuildRight;SteelCo;ConcretePros;Apex Builders;Urban Works;SolidBase|specialty,specialty:Electrical;Plumbing;Steel;Concrete
insurance|Insurance policies, premiums, claims, and agent territories in the insurance industry.|policies,policy_id,policy,policies|Home Shield;Auto Secure;Life Plus;Health Prime;Travel Safe;Pet Care;Farm Guard|policy_type,policy type:Home;Auto;Life;Health|premium,annual premium,200,5000|claims,claim_id,claim,claims|amount,claim amount,100,40000|agents,agent_id,agent,agents|@P1|region,region:North;South;Central
food services|Restaurant capacity, orders, cuisines, and delivery partners in food services.|restaurants,restaurant_id,restaurant,restaurants|Bella Italia;Sushi Zen;Taco Town;Le Bistro;Curry House;Burger Barn;Green Bowl|cuisine,cuisine:Italian;Japanese;Mexican;French;Indian|seating_capacity,seating capacity,20,250|orders,order_id,order,orders|total,order total,5,300|delivery_partners,partner_id,delivery partner,delivery partners|QuickEats;FoodDash;RideBite;MealGo;HungryNow;FastFork|city,city:Chicago;Austin;Seattle
space exploration|Satellites, orbits, data transmissions, and ground station networks in space exploration.|satellites,satellite_id,satellite,satellites|Aurora-1;Helios-2;Orion Sat;Vega-3;Nova-7;Atlas-4;Zenith-5|orbit,orbit type:LEO;MEO;GEO|mass,mass in kg,100,6000|transmissions,transmission_id,data transmission,data transmissions|data_volume,data volume in GB,1,900|ground_stations,station_id,ground station,ground stations|Svalbard;Canberra;Madrid Station;Goldstone;Kourou;Santiago|country,country:Norway;Australia;Spain;USA
climate change|City emissions, population, industrial sectors, and climate mitigation data.|cities,city_id,city,cities|Oslo;Lagos;Lima;Delhi;Toronto;Cairo;Jakarta|continent,continent:Europe;Africa;Asia;South America;North America|population,population in thousands,500,30000|emissions,emission_id,emission record,emission records|co2_tons,CO2 emissions in tons,100,9000|industries,industry_id,industry,industries|Steel;Cement;Transport;Power;Agriculture;Chemicals|category,category:Heavy;Light;Services
human resources|Departments, headcount, salary payments, and employee job levels in human resources.|departments,department_id,department,departments|Engineering;Marketing;Finance;Legal;Support;Operations;Research|location,location:New York;London;Singapore|headcount,headcount,3,200|salary_payments,payment_id,salary payment,salary payments|amount,payment amount,1000,9000|employees,employee_id,employee,employees|@P2|job_level,job level:Junior;Senior;Manager
legal services|Law firms, case billing, attorneys, and client industries in legal services.|law_firms,firm_id,law firm,law firms|Baker Legal;Reed Partners;Stone Law;Grant LLP;Hale Associates;Marsh Counsel;Pike Legal|city,city:Chicago;Boston;Dallas|attorneys,number of attorneys,5,300|cases,case_id,case,cases|billing,billing amount,1000,90000|clients,client_id,client,clients|@P3|industry,industry:Tech;Retail;Finance;Health
defense industry|Military equipment, maintenance records, unit costs, and base assignments in the defense industry.|equipment,equipment_id,equipment item,equipment items|Falcon Drone;Titan Tank;Raptor Jet;Sentinel Radar;Trident Ship;Hawk Helicopter;Guardian Truck|equipment_type,equipment type:Vehicle;Aircraft;Naval;Radar|unit_cost,unit cost in thousands,50,9000|maintenance,maintenance_id,maintenance record,maintenance records|hours,maintenance hours,2,200|military_bases,base_id,military base,military bases|Fort Alpha;Camp Bravo;Base Charlie;Fort Delta;Camp Echo;Station Foxtrot|country,country:USA;UK;Germany;Japan
tourism|Tourist destinations, visits, entry fees, and tour operators in the tourism industry.|destinations,destination_id,destination,destinations|Machu Picchu;Eiffel Tower;Grand Canyon;Great Wall;Taj Mahal;Colosseum;Petra|continent,continent:Europe;Asia;Americas;Africa|entry_fee,entry fee,5,80|visits,visit_id,visit,visits|visitors,number of visitors,50,5000|tour_operators,operator_id,tour operator,tour operators|@P1|country,country:USA;UK;Japan;Germany
";

fn names(s: &'static str) -> Vec<&'static str> {
    let s = match s {
        "@P1" => P1,
        "@P2" => P2,
        "@P3" => P3,
        other => other,
    };
    s.split(';').map(str::trim).collect()
}

fn quad(s: &'static str) -> [&'static str; 4] {
    let v: Vec<&str> = s.split(',').map(str::trim).collect();
    assert_eq!(
        v.len(),
        4,
        "domain spec: expected 4 comma-separated items in {s:?}"
    );
    [v[0], v[1], v[2], v[3]]
}

fn labelled(s: &'static str) -> (&'static str, &'static str, Vec<&'static str>) {
    let (head, values) = s.split_once(':').expect("domain spec: `col,noun:values`");
    let (col, noun) = head.split_once(',').expect("domain spec: `col,noun`");
    (col, noun, names(values))
}

fn ranged(s: &'static str) -> (&'static str, &'static str, (i64, i64)) {
    let [col, noun, lo, hi] = quad(s);
    let lo = lo.parse().expect("domain spec: range low");
    let hi = hi.parse().expect("domain spec: range high");
    (col, noun, (lo, hi))
}

fn parse_line(line: &'static str) -> Domain {
    let f: Vec<&'static str> = line.split('|').collect();
    assert_eq!(
        f.len(),
        11,
        "domain spec line has {} fields: {line}",
        f.len()
    );
    let [et, eid, es, ep] = quad(f[2]);
    let (cat_col, cat_noun, cats) = labelled(f[4]);
    let (num_col, num_noun, num_range) = ranged(f[5]);
    let [vt, vid, vs, vp] = quad(f[6]);
    let (measure_col, measure_noun, range) = ranged(f[7]);
    let [at, aid, as_, ap] = quad(f[8]);
    let (attr_col, attr_noun, attrs) = labelled(f[10]);
    Domain {
        name: f[0],
        description: f[1],
        entity: Entity {
            table: et,
            id: eid,
            singular: es,
            plural: ep,
            names: names(f[3]),
            cat_col,
            cat_noun,
            cats,
            num_col,
            num_noun,
            num_range,
        },
        event: Event {
            table: vt,
            id: vid,
            singular: vs,
            plural: vp,
            measure_col,
            measure_noun,
            range,
        },
        agent: Agent {
            table: at,
            id: aid,
            singular: as_,
            plural: ap,
            names: names(f[9]),
            attr_col,
            attr_noun,
            attrs,
        },
    }
}

/// All domains, parsed once from the static spec.
pub fn domains() -> &'static [Domain] {
    static D: OnceLock<Vec<Domain>> = OnceLock::new();
    D.get_or_init(|| {
        SPEC.lines()
            .filter(|l| !l.trim().is_empty())
            .map(parse_line)
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_with_enough_values() {
        let ds = domains();
        assert!(ds.len() >= 30, "{} domains", ds.len());
        let mut seen = std::collections::HashSet::new();
        for d in ds {
            assert!(seen.insert(d.name), "duplicate domain {}", d.name);
            assert!(d.entity.names.len() >= 7, "{}: entity names", d.name);
            assert!(d.agent.names.len() >= 6, "{}: agent names", d.name);
            assert!(
                d.entity.cats.len() >= 3 && d.agent.attrs.len() >= 3,
                "{}",
                d.name
            );
            assert!(d.entity.num_range.0 < d.entity.num_range.1);
            assert!(d.event.range.0 < d.event.range.1);
            let all = d
                .entity
                .names
                .iter()
                .chain(&d.agent.names)
                .chain(&d.entity.cats);
            assert!(
                all.clone().all(|v| !v.contains('\'')),
                "{}: quote in a value",
                d.name
            );
        }
    }
}
