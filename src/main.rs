fn main() {
    println!("t2s");
}
